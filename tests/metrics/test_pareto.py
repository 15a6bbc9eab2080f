from itertools import product

import numpy as np
import pandas as pd
import pytest

from dear_ray.metrics.pareto import check_objectives, non_dominated, pareto_front, plot_pareto_front


def test_a_hand_made_front():
    # (accuracy max, auroc max): (0.9, 0.6) and (0.7, 0.8) trade off; (0.7, 0.6) is beaten by
    # both; (0.9, 0.6) twice: equal rows do not dominate each other
    values = np.array([[0.9, 0.6], [0.7, 0.8], [0.7, 0.6], [0.9, 0.6], [np.nan, 0.99]])
    assert non_dominated(values, [True, True]).tolist() == [True, True, False, True, False]
    # minimising the second objective: (0.9, 0.6) beats everything but the NaN row
    assert non_dominated(values, [True, False]).tolist() == [True, False, False, True, False]


def _brute_force(values, maximize):
    signs = np.where(maximize, 1.0, -1.0)
    front = []
    for j, b in enumerate(values):
        if np.isnan(b).any():
            front.append(False)
            continue
        beaten = any(
            not np.isnan(a).any() and all(s * x >= s * y for s, x, y in zip(signs, a, b))
            and any(s * x > s * y for s, x, y in zip(signs, a, b))
            for i, a in enumerate(values) if i != j)
        front.append(not beaten)
    return front


@pytest.mark.parametrize("seed, ways", list(product(range(5), [(True, True, True), (True, False, True)])))
def test_front_equals_brute_force(seed, ways):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 4, size=(12, 3)).astype(float)  # many ties
    assert non_dominated(values, list(ways)).tolist() == _brute_force(values, list(ways))


def test_table_front_and_plot(tmp_path):
    table = pd.DataFrame({"trial": list("abcd"), "closed_top1": [0.9, 0.8, 0.7, 0.95],
                          "auroc": [0.7, 0.9, 0.6, 0.5]})
    front = pareto_front(table, {"closed_top1": "max", "auroc": "max"})
    assert front["trial"].tolist() == ["d", "a", "b", "c"]
    assert front["on_front"].tolist() == [True, True, True, False]
    path = plot_pareto_front(front, {"closed_top1": "max", "auroc": "max"}, tmp_path / "p.png")
    assert path.stat().st_size > 1000


def test_errors_name_the_objective():
    with pytest.raises(ValueError, match="at least two"):
        check_objectives({"auroc": "max"})
    with pytest.raises(ValueError, match="'auroc': 'up'"):
        check_objectives({"closed_top1": "max", "auroc": "up"})
    with pytest.raises(ValueError, match=r"no column \['contrast_acc'\]"):
        pareto_front(pd.DataFrame({"auroc": [0.5], "closed_top1": [0.5]}),
                     {"auroc": "max", "contrast_acc": "max"})
