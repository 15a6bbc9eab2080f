"""Detectors that reshape the features or the classifier before taking the energy: SCALE, DICE.

Scores are UNCERTAINTIES (higher = more likely unknown): OpenOOD v1.5 returns the energy
confidence `logsumexp(logits)`; each is negated here.

OpenOOD runs these with a modified forward pass (`networks/scale_net.py`
`ScaleNet.forward_threshold`; `postprocessors/dice_postprocessor.py`, which recomputes the fc
from the penultimate features with masked weights). Here both act on a store's pooled features
(the classifier's input) with the trial's classifier file (`dear_ray.scores.classifier`): the
head is one linear layer on those features, `logits = x W^T + b`, so this is the same
computation without the network. As for ReAct and ASH (`dear_ray.scores.posthoc`), a video's x
is its VIEW-AVERAGED feature: scaling or masking each view's feature and then averaging the
logits would give other numbers (SCALE's factor depends on the vector it scales).

- `Scale`: SCALE (Xu et al., "Scaling for Training Time and Post-hoc Out-of-distribution Detection
  Enhancement", ICLR 2024), OpenOOD `scale`, percentile 85 (`configs/postprocessors/scale.yml`).
- `DICE`: DICE (Sun & Li, "DICE: Leveraging Sparsification for Out-of-Distribution Detection",
  ECCV 2022), OpenOOD `dice`, percentile 90 (`configs/postprocessors/dice.yml`).
"""

from __future__ import annotations

import numpy as np

from dear_ray.scores._checks import as_classifier, as_features, need_features
from dear_ray.scores.posthoc import FEATURE_LAYER
from dear_ray.scores.softmax import energy


def _check_percentile(name: str, percentile: float) -> float:
    if not 0 <= percentile < 100:
        raise ValueError(f"{name}: percentile={percentile!r}; expected [0, 100)")
    return float(percentile)


def scale_features(features, percentile: float = 85.0) -> np.ndarray:
    """SCALE's feature scaling on `(N, F)` features: each row `x` becomes `x * exp(r)`.

    `r = s1 / s2`, `s1` the sum of the row, `s2` the sum of its `k = F - round(F p / 100)` largest
    values (`np.round`, half to even, as OpenOOD's `scale`). The paper's scaling factor
    `exp(Q / Q_p)`, with Q the sum of the activations and Q_p the sum of those above the p-th
    percentile. Unlike ASH-S (which applies the same factor to the pruned row), every value is
    kept and only scaled.

    Raises:
        ValueError: a row whose k largest values do not sum to a positive number (SCALE assumes
            non-negative, post-ReLU features; such a row has no defined factor).
    """
    x = as_features(features)
    percentile = _check_percentile("scale", percentile)
    f = x.shape[1]
    keep = f - int(np.round(f * percentile / 100.0))
    top = -np.partition(-x, keep - 1, axis=1)[:, :keep]
    s2 = top.sum(axis=1)
    bad = ~(s2 > 0)
    if bad.any():
        raise ValueError(f"scale: {int(bad.sum())} video(s) whose {keep} largest feature values sum to <= 0; "
                         "SCALE assumes non-negative (post-ReLU) pooled features")
    return x * np.exp(x.sum(axis=1) / s2)[:, None]


class Scale:
    """SCALE's score: `-logsumexp(scale_features(x, p) W^T + b)`; nothing is fitted.

    OpenOOD: `percentile` 85 by default, searched over 65..95 on its validation split (APS).
    """

    def __init__(self, weight, bias, *, percentile: float = 85.0) -> None:
        self.weight, self.bias = as_classifier("scale", weight, bias)
        self.percentile = _check_percentile("scale", percentile)

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        need_features("scale", features)
        x = scale_features(as_features(features, width=self.weight.shape[1]), self.percentile)
        return energy(x @ self.weight.T + self.bias)

    def describe(self) -> str:
        return (f"{FEATURE_LAYER}, F={self.weight.shape[1]}; each video's vector scaled by exp(sum / sum of "
                f"its values above the {self.percentile:g}th percentile); classifier W, b")


class DICE:
    """DICE: the energy of a classifier whose least contributing weights are zeroed.

    `fit(features)` on the training videos: their mean feature `m` `(F,)`, the contributions
    `V = m * W` (`(K, F)`, each weight times the mean of its input), and the mask `M = V > t`,
    `t` the `percentile`-th percentile of all K F entries of V (numpy's linear interpolation, as
    OpenOOD's `np.percentile`); p = 90 keeps the 10% largest contributions. Score:
    `-logsumexp(x (M * W)^T + b)`; the bias is kept whole. The paper's sparsified output
    `h(x) = (M * W)^T x + b` with the energy as its score.
    """

    def __init__(self, weight, bias, *, percentile: float = 90.0) -> None:
        self.weight, self.bias = as_classifier("dice", weight, bias)
        self.percentile = _check_percentile("dice", percentile)
        self.mask: np.ndarray | None = None
        self.threshold: float | None = None
        self.num_fitted = 0

    def fit(self, *, logits=None, labels=None, features=None) -> DICE:
        need_features("dice", features)
        x = as_features(features, width=self.weight.shape[1])
        if x.shape[0] == 0:
            raise ValueError("dice: no training videos to take the mean feature of")
        contribution = self.weight * x.mean(axis=0)[None]
        self.threshold = float(np.percentile(contribution, self.percentile))
        self.mask = contribution > self.threshold
        self.num_fitted = x.shape[0]
        return self

    def __call__(self, logits=None, *, features=None, sample_logits=None, leave_one_out=False) -> np.ndarray:
        if self.mask is None:
            raise ValueError("dice is not fitted: call .fit(features=train_features) first")
        need_features("dice", features)
        x = as_features(features, width=self.weight.shape[1])
        return energy(x @ (self.weight * self.mask).T + self.bias)

    def describe(self) -> str:
        if self.mask is None:
            return "dice: not fitted"
        return (f"{FEATURE_LAYER}, F={self.weight.shape[1]}; classifier W masked where mean feature x weight "
                f"> its {self.percentile:g}th percentile ({int(self.mask.sum())} of {self.mask.size} weights kept), "
                f"mean of {self.num_fitted} training videos; bias b")
