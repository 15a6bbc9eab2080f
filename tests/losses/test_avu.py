import math

import pytest
import torch

from dear_ray.losses import avu_loss

ALPHA = torch.tensor([[9.0, 1.0, 2.0], [1.5, 1.0, 1.2], [1.0, 4.0, 30.0], [2.0, 2.0, 1.0]],
                     dtype=torch.float64)
LABELS = torch.tensor([0, 2, 1, 0])  # correct, wrong, wrong, correct (tie -> index 0)
EPS = 1e-10


def _loop(anneal, disentangle):
    total = 0.0
    for a, y in zip(ALPHA.tolist(), LABELS.tolist()):
        s = sum(a)
        probs = [v / s for v in a]
        p = max(probs)
        pred = probs.index(p)
        u = len(a) / s
        if pred == y:
            term = -math.log(p * (1 - u) + EPS) if disentangle else -p * math.log(1 - u + EPS)
            total += anneal * term
        else:
            term = -math.log((1 - p) * u + EPS) if disentangle else -(1 - p) * math.log(u + EPS)
            total += (1 - anneal) * term
    return total / len(LABELS)


@pytest.mark.parametrize("disentangle", [False, True])
@pytest.mark.parametrize("anneal", [0.01, 0.4, 1.0])
def test_avu_matches_explicit_loop(anneal, disentangle):
    loss, stats = avu_loss(ALPHA, LABELS, anneal=anneal, disentangle=disentangle)
    assert float(loss) == pytest.approx(_loop(anneal, disentangle), rel=1e-12)
    assert stats["loss_avu"] == pytest.approx(_loop(anneal, disentangle), rel=1e-12)


def test_avu_stats_and_gradient():
    alpha = ALPHA.clone().requires_grad_(True)
    loss, stats = avu_loss(alpha, LABELS, anneal=0.5)
    u = 3 / ALPHA.sum(1)
    assert stats["avu_accurate_certain"] == pytest.approx(float((1 - u[[0, 3]]).mean()))
    assert stats["avu_inaccurate_uncertain"] == pytest.approx(float(u[[1, 2]].mean()))
    loss.backward()
    # a confident wrong sample (row 2) is pushed towards more uncertainty: scaling its alpha up
    # (same p, smaller u) must increase the loss; a correct one (row 0) the other way round
    assert float((alpha.grad[2] * ALPHA[2]).sum()) > 0
    assert float((alpha.grad[0] * ALPHA[0]).sum()) < 0


def test_avu_rejects_bad_anneal():
    with pytest.raises(ValueError, match=r"anneal must be in \[0, 1\]"):
        avu_loss(ALPHA, LABELS, anneal=1.5)
