"""Closed-set predictions of a stored model, as DEAR's evaluation scripts make them.

A store's `pred` column is the argmax of its view-averaged logits. DEAR's scripts predict
differently per method, and the metrics take the prediction from here:

- `logits`: argmax of the logits (SoftMax, RPL: `baseline_softmax.py`, `baseline_rpl.py` take the
  argmax of the softmax, which is the argmax of the logits).
- `dirichlet`: argmax of the expected probability alpha / S (EDL, DEAR: `ood_detection.py`
  `run_evidence_inference`). With the clamped `exp` evidence two logits above 10 tie, and
  `np.argmax` (like torch's) returns the FIRST tied index, not the larger logit.
- `mean_passes`: argmax of the mean over the stochastic passes of their softmax (MC dropout, BNN:
  `ood_detection.py` `run_stochastic_inference`, `np.mean(all_scores, axis=-1)`), not the argmax of a
  deterministic pass.

Ties always resolve to the first index (numpy's argmax).
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from dear_ray.methods import default_prediction_rule
from dear_ray.scores.evidential import expected_probability
from dear_ray.scores.store import ScoreStore

PREDICTION_RULES = ("logits", "dirichlet", "mean_passes")


def class_probabilities(store: ScoreStore, rule: str) -> np.ndarray:
    """The `(N, K)` class scores whose argmax is the prediction under `rule`.

    `logits` returns the logits themselves (not probabilities); `dirichlet` alpha / S with the `exp`
    evidence; `mean_passes` the mean over the `(S, N, K)` passes of their softmax.
    """
    if rule == "logits":
        return np.asarray(store.logits, dtype=np.float64)
    if rule == "dirichlet":
        return expected_probability(store.logits)
    if rule == "mean_passes":
        if store.sample_logits is None:
            raise ValueError(f"{store.path}: prediction rule 'mean_passes' needs sample_logits (S, N, K) "
                             "from stochastic passes; the store has none")
        return softmax(np.asarray(store.sample_logits, dtype=np.float64), axis=-1).mean(axis=0)
    raise ValueError(f"prediction rule {rule!r}; expected one of {', '.join(PREDICTION_RULES)}")


def closed_predictions(store: ScoreStore, rule: str) -> np.ndarray:
    """`(N,)` int64 predicted classes in [0, K) under `rule` (first index on ties)."""
    return class_probabilities(store, rule).argmax(axis=1).astype(np.int64)
