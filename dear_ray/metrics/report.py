"""One row of the results table from the score stores of one model (SPEC 2).

The metric keys are stable and double as MLflow metric names across methods; values are
fractions in [0, 1] except `threshold`, which is in the score's own units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dear_ray.metrics.calibration import ece
from dear_ray.metrics.closed import closed_set_accuracy, open_set_confusion_matrix
from dear_ray.metrics.ood import binarized_auc, ood_metrics, open_auc, threshold_from_train
from dear_ray.metrics.openset import OpennessCurve, open_macro_f1, open_set_f1_curve
from dear_ray.scores import EVIDENTIAL_HEADS
from dear_ray.scores.evidential import expected_probability
from dear_ray.scores.softmax import softmax_probs
from dear_ray.scores.store import KNOWN_SPLITS, UNKNOWN_SPLIT, ScoreStore

METRIC_KEYS = (
    "closed_top1", "closed_top5", "closed_mean_class_acc", "open_maf1", "binarized_auc", "auroc", "aupr_in",
    "aupr_out", "fpr_at_95_tpr", "open_auc", "ece", "shifted_top1", "static_bias_gap", "threshold",
)
# scores that are 1 - a confidence in [0, 1]; ECE uses 1 - score for them and the MSP otherwise
_ONE_MINUS_CONFIDENCE = ("msp", "vacuity", "rpl", "openmax")


@dataclass(frozen=True)
class OpenSetReport:
    """`metrics` is the table row; the arrays feed the plots.

    Attributes:
        metrics: key (see `METRIC_KEYS`) -> value; `shifted_top1`/`static_bias_gap` only with a
            `test_shifted` store.
        curve: the openness curve.
        confusion: `(K+1, K+1)` open-set confusion matrix, unknown last.
        known_scores: `(Nk,)` the known test split's uncertainties.
        unknown_scores: `(Nu,)` all unknown samples' uncertainties.
        confidence: `(Nk,)` the confidence ECE was computed on.
        correct: `(Nk,)` whether each known test prediction is right.
    """

    metrics: dict[str, float]
    curve: OpennessCurve
    confusion: np.ndarray
    known_scores: np.ndarray
    unknown_scores: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray


def combine_unknown_classes(unknown: Sequence[ScoreStore]) -> np.ndarray:
    """Class ids of all unknown samples, made distinct across data sets.

    Stores are taken in the given order; the ids of the i-th store are offset by the number of
    ids used by the stores before it (`max id + 1`), so the same class id in two data sets names two
    classes. With one store the ids are unchanged.
    """
    out, offset = [], 0
    for store in unknown:
        out.append(store.labels + offset)
        offset += int(store.labels.max()) + 1 if len(store) else 0
    return np.concatenate(out)


def _check_stores(train: ScoreStore, known: ScoreStore, unknown: Sequence[ScoreStore],
                  shifted: ScoreStore | None) -> int:
    expected = [(train, ("train",)), (known, tuple(s for s in KNOWN_SPLITS if s != "train"))]
    expected += [(u, (UNKNOWN_SPLIT,)) for u in unknown]
    if shifted is not None:
        expected.append((shifted, ("test_shifted",)))
    k, run = train.meta.num_known, train.meta.run
    for store, splits in expected:
        if store.meta.split not in splits:
            raise ValueError(f"{store.path}: split {store.meta.split!r} given where {' or '.join(splits)} "
                             "was expected")
        if store.meta.num_known != k:
            raise ValueError(f"{store.path}: num_known={store.meta.num_known}, but the train store "
                             f"{train.path} has num_known={k}")
        if store.meta.run != run:
            raise ValueError(f"{store.path}: belongs to run {store.meta.run!r}, the train store {train.path} "
                             f"to run {run!r}; a report needs the stores of one model")
    return k


def _confidence(store: ScoreStore, score: str) -> np.ndarray:
    if score in _ONE_MINUS_CONFIDENCE:
        return np.clip(1.0 - store.score(score), 0.0, 1.0)
    probs = expected_probability(store.logits) if store.meta.head in EVIDENTIAL_HEADS \
        else softmax_probs(store.logits)
    return probs.max(axis=1)


def open_set_report(*, train: ScoreStore, known: ScoreStore, unknown: ScoreStore | Sequence[ScoreStore],
                    score: str, shifted: ScoreStore | None = None, subsets=None, num_trials: int = 10,
                    seed: int = 0, accept: float = 0.95) -> OpenSetReport:
    """Every metric of SPEC 2 for one model under one score.

    Args:
        train: the known training split's store (sets the threshold).
        known: the known test split's store.
        unknown: one or more unknown splits' stores (class ids are combined with
            `combine_unknown_classes`).
        score: the uncertainty score to evaluate (a column of every store).
        shifted: optional `test_shifted` store (static-bias check).
        subsets: shared unknown-class subsets (`draw_unknown_subsets(combine_unknown_classes(...))`);
            default: drawn with `num_trials` and `seed`.
        accept: fraction of training videos accepted by the threshold.
    """
    unknown = [unknown] if isinstance(unknown, ScoreStore) else list(unknown)
    if not unknown:
        raise ValueError("open_set_report: at least one unknown store is needed")
    k = _check_stores(train, known, unknown, shifted)
    thr = threshold_from_train(train.score(score), accept)
    ks = known.score(score)
    us = np.concatenate([u.score(score) for u in unknown])
    upreds = np.concatenate([u.preds for u in unknown])
    uclasses = combine_unknown_classes(unknown)

    closed = closed_set_accuracy(known.labels, known.preds, known.logits)
    curve = open_set_f1_curve(known.labels, known.preds, ks, uclasses, upreds, us, thr,
                              num_trials=num_trials, seed=seed, subsets=subsets, num_known=k)
    correct = known.preds == known.labels
    confidence = _confidence(known, score)
    metrics = {
        "closed_top1": closed["top1"],
        "closed_top5": closed["top5"],
        "closed_mean_class_acc": closed["mean_class_acc"],
        "open_maf1": open_macro_f1(curve),
        "binarized_auc": binarized_auc(ks, us, thr),
        **ood_metrics(ks, us),
        "open_auc": open_auc(known.labels, known.preds, ks, us),
        "ece": ece(confidence, correct),
        "threshold": thr,
    }
    if shifted is not None:
        metrics["shifted_top1"] = closed_set_accuracy(shifted.labels, shifted.preds)["top1"]
        metrics["static_bias_gap"] = metrics["closed_top1"] - metrics["shifted_top1"]
    metrics = {key: float(metrics[key]) for key in METRIC_KEYS if key in metrics}
    confusion = open_set_confusion_matrix(known.labels, known.preds, ks, upreds, us, thr, num_known=k)
    return OpenSetReport(metrics=metrics, curve=curve, confusion=confusion, known_scores=ks, unknown_scores=us,
                         confidence=confidence, correct=correct)
