"""One row of the results table from the score stores of one model on one unknown set (docs/metrics.md).

The metric keys are stable and double as MLflow metric names across methods (the aggregator puts
the unknown set in the name of those in `UNKNOWN_SET_KEYS`); values are fractions in [0, 1] except
`threshold`, which is in the score's own units.

Decisions follow DEAR's scripts: the threshold rank per score (`threshold_from_train`), the
threshold as `get_threshold.py` prints it (`threshold_print`), the closed-set prediction per head
(`dear_ray.scores.predictions`), and OpenMax's argmax over K+1 classes without a threshold
(`decide`).

Imported stores (`dear_ray.scores.released`) come without a training split: their threshold is
the one stored with them (`StoreMeta.threshold`; without one the thresholded metrics are NaN),
their closed-set prediction the file's, and without logits top-5 and ECE are NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dear_ray.methods import default_prediction_rule, default_threshold_rank, is_evidential
from dear_ray.metrics.calibration import ece
from dear_ray.metrics.closed import closed_set_accuracy, confusion_of_decisions
from dear_ray.metrics.ood import (
    ood_metrics,
    open_auc,
    threshold_from_train,
)
from dear_ray.metrics.openset import OpennessCurve, open_macro_f1, open_set_f1_curve_from_decisions
from dear_ray.metrics.static_bias import pair_by_video_id, static_bias_metrics
from dear_ray.scores.evidential import expected_probability
from dear_ray.scores.predictions import class_probabilities, closed_predictions
from dear_ray.scores.softmax import softmax_probs
from dear_ray.scores.store import KNOWN_SPLITS, UNKNOWN_SPLIT, ScoreStore

METRIC_KEYS = (
    "closed_top1", "closed_top5", "closed_mean_class_acc", "open_maf1", "binarized_auc",
    "binarized_aupr_out_trapz", "binarized_fpr_at_95_tpr_nearest", "auroc",
    "aupr_in_ap", "aupr_out_ap", "aupr_in_trapz", "aupr_out_trapz", "fpr_at_95_tpr_first",
    "fpr_at_95_tpr_nearest", "open_auc", "ece", "shifted_top1", "static_bias_gap", "scuba_top1",
    "scufo_top1", "contrast_acc", "threshold",
)
# the metrics that are about one unknown set (the others depend on the known splits only)
UNKNOWN_SET_KEYS = (
    "open_maf1", "binarized_auc", "binarized_aupr_out_trapz", "binarized_fpr_at_95_tpr_nearest", "auroc",
    "aupr_in_ap", "aupr_out_ap", "aupr_in_trapz", "aupr_out_trapz",
    "fpr_at_95_tpr_first", "fpr_at_95_tpr_nearest", "open_auc",
)
MERGED_UNKNOWN_SET = "all"  # the `unknown_set` of a report on several unknown data sets merged
# the thresholded detection metrics: AUROC, trapezoidal AUPR and FPR@95 (nearest) of the 0/1
# rejections, as the "thresholds" tables of DEAR's compare_openness_new.py and PSL print them
BINARIZED = {"auroc": "binarized_auc", "aupr_out_trapz": "binarized_aupr_out_trapz",
             "fpr_at_95_tpr_nearest": "binarized_fpr_at_95_tpr_nearest"}
THRESHOLD_PRINTS = ("released", "exact")
PRINTED_DECIMALS = 6  # get_threshold.py prints the threshold with `%lf`
# scores that are 1 - a confidence in [0, 1]; ECE uses 1 - score for them and the MSP otherwise
ONE_MINUS_CONFIDENCE = ("msp", "vacuity", "rpl", "openmax", "temp_msp")


Decide = Callable[[ScoreStore], np.ndarray]


@dataclass(frozen=True)
class OpenSetReport:
    """`metrics` is the table row; the arrays feed the plots and the bootstrap.

    Attributes:
        metrics: key (see `METRIC_KEYS`) -> value; `shifted_top1`/`static_bias_gap` only with a
            `test_shifted` store, `scuba_top1` with a `test_scuba` store, `scufo_top1` with a
            `test_scufo` store, `contrast_acc` with both (`dear_ray.metrics.static_bias`);
            `threshold` is NaN when the decisions come without one (OpenMax).
        curve: the openness curve; None without open-set decisions (no threshold).
        confusion: `(K+1, K+1)` open-set confusion matrix, unknown last.
        unknown_set: the unknown data set's name, or `MERGED_UNKNOWN_SET` for several merged.
        known_scores: `(Nk,)` the known test split's uncertainties.
        unknown_scores: `(Nu,)` the unknown samples' uncertainties.
        confidence: `(Nk,)` the confidence ECE was computed on.
        correct: `(Nk,)` whether each known test prediction is right.
        known_labels: `(Nk,)`; known_preds: `(Nk,)` closed-set predictions (OpenMax: its
            decisions); known_decisions, unknown_decisions: `(Nk,)`, `(Nu,)` open-set
            decisions in [0, K] (K = unknown); unknown_classes: `(Nu,)` (distinct across merged sets).
        top5_hit: `(Nk,)` whether the label is in the top 5.
        shifted_correct: `(Ns,)` or None.
        known_ids, unknown_ids, shifted_ids: the video ids, to pair two reports' videos.
        scuba_correct, scufo_correct: `(Na,)`, `(Nb,)` whether each SCUBA / SCUFO prediction is
            right, or None; scuba_ids, scufo_ids: their video ids (a SCUFO clip pairs with the
            SCUBA clip of the same id).
    """

    metrics: dict[str, float]
    curve: OpennessCurve | None
    confusion: np.ndarray
    unknown_set: str
    known_scores: np.ndarray
    unknown_scores: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray
    known_labels: np.ndarray
    known_preds: np.ndarray
    known_decisions: np.ndarray
    unknown_classes: np.ndarray
    unknown_decisions: np.ndarray
    top5_hit: np.ndarray
    shifted_correct: np.ndarray | None
    known_ids: np.ndarray
    unknown_ids: np.ndarray
    shifted_ids: np.ndarray | None
    scuba_correct: np.ndarray | None = None
    scuba_ids: np.ndarray | None = None
    scufo_correct: np.ndarray | None = None
    scufo_ids: np.ndarray | None = None

    @property
    def num_known(self) -> int:
        return int(self.confusion.shape[0] - 1)


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


def _check_stores(train: ScoreStore | None, known: ScoreStore, unknown: Sequence[ScoreStore],
                  shifted: ScoreStore | None, scuba: ScoreStore | None = None,
                  scufo: ScoreStore | None = None) -> int:
    expected = [(known, tuple(s for s in KNOWN_SPLITS if s not in ("train", "test_scuba", "test_scufo")))]
    if train is not None:
        expected.insert(0, (train, ("train",)))
    expected += [(u, (UNKNOWN_SPLIT,)) for u in unknown]
    for store, split in ((shifted, "test_shifted"), (scuba, "test_scuba"), (scufo, "test_scufo")):
        if store is not None:
            expected.append((store, (split,)))
    first = train if train is not None else known
    k, run, role = first.meta.num_known, first.meta.run, "train" if train is not None else "known"
    for store, splits in expected:
        if store.meta.split not in splits:
            raise ValueError(f"{store.path}: split {store.meta.split!r} given where {' or '.join(splits)} "
                             "was expected")
        if store.meta.num_known != k:
            raise ValueError(f"{store.path}: num_known={store.meta.num_known}, but the {role} store "
                             f"{first.path} has num_known={k}")
        if store.meta.run != run:
            raise ValueError(f"{store.path}: belongs to run {store.meta.run!r}, the {role} store {first.path} "
                             f"to run {run!r}; a report needs the stores of one model")
    return k


def printed_threshold(value: float) -> float:
    """The threshold as `get_threshold.py` prints it (`%lf`: 6 decimals) and DEAR's
    `run_openness.sh` passes it on: `float('%f' % value)`."""
    return float(f"{value:.{PRINTED_DECIMALS}f}")


def report_threshold(train: ScoreStore | None, known: ScoreStore, score: str, *, accept: float = 0.95,
                     rank: str | None = None, threshold_print: str = "released") -> float | None:
    """DEAR's rejection threshold of one model under `score` (reject `score > threshold`).

    With a training store: `threshold_from_train` at `accept`, with DEAR's rank per score;
    `threshold_print="released"` rounds a `get_threshold` rank threshold to 6 decimals as DEAR's
    published tables used it (`get_threshold.py` prints `%lf`, `run_openness.sh` passes the print;
    SoftMax and RPL compute theirs in-script, exactly), `"exact"` keeps it. Without one: the
    threshold imported with the known store, or None.
    """
    if threshold_print not in THRESHOLD_PRINTS:
        raise ValueError(f"threshold_print={threshold_print!r}; expected one of {', '.join(THRESHOLD_PRINTS)}")
    if train is None:
        return known.meta.threshold
    rank = rank or default_threshold_rank(train.meta.head, score)
    value = threshold_from_train(train.score(score), accept, rank=rank)
    return printed_threshold(value) if threshold_print == "released" and rank == "get_threshold" else value


def binarized_metrics(known_rejected, unknown_rejected) -> dict[str, float]:
    """`BINARIZED` metrics of 0/1 rejections `(Nk,)`, `(Nu,)`: `ood_metrics` with the decisions as
    scores, as DEAR's `compare_openness_new.py` and PSL's scripts do with `--thresholds`."""
    m = ood_metrics(np.asarray(known_rejected, dtype=np.float64), np.asarray(unknown_rejected, dtype=np.float64))
    return {name: m[key] for key, name in BINARIZED.items()}


def _confidence(store: ScoreStore, score: str) -> np.ndarray:
    """The confidence ECE is computed on; NaN for a store without logits whose score is no
    `1 - confidence`."""
    if score.split("(")[0] in ONE_MINUS_CONFIDENCE:  # `temp_msp(val)`: its temperature-scaled MSP
        return np.clip(1.0 - store.score(score), 0.0, 1.0)
    if store.logits is None:
        return np.full(len(store), np.nan)
    probs = expected_probability(store.logits) if is_evidential(store.meta.head) \
        else softmax_probs(store.logits)
    return probs.max(axis=1)


def _top5_hit(labels: np.ndarray, z: np.ndarray, k: int = 5) -> np.ndarray:
    # a label counts when fewer than k classes score strictly higher (ties in its favour)
    return (z > z[np.arange(labels.size), labels][:, None]).sum(axis=1) < min(k, z.shape[1])


def open_set_report(*, train: ScoreStore | None, known: ScoreStore,
                    unknown: ScoreStore | Sequence[ScoreStore], score: str, shifted: ScoreStore | None = None,
                    subsets=None, num_trials: int = 10, seed: int = 0, accept: float = 0.95,
                    threshold_rank: str | None = None, prediction: str | None = None,
                    decide: Decide | None = None, mean_class: str = "mmaction2",
                    scuba: ScoreStore | None = None, scufo: ScoreStore | None = None,
                    threshold_print: str = "released") -> OpenSetReport:
    """Every metric of docs/metrics.md for one model under one score, on one unknown set.

    Args:
        train: the known training split's store (sets the threshold); None for imported stores,
            whose threshold comes with them (`StoreMeta.threshold`).
        known: the known test split's store.
        unknown: the unknown split's store; a sequence of several is evaluated MERGED (class ids
            made distinct with `combine_unknown_classes`, `unknown_set` = `all`): docs/metrics.md
            reports each
            unknown data set on its own, so pass several only for an explicitly named merged row.
        score: the uncertainty score to evaluate (a column of every store).
        shifted: optional `test_shifted` store (static-bias check).
        subsets: shared unknown-class subsets (`draw_unknown_subsets(...)`); default: drawn with
            `num_trials` and `seed`.
        accept: fraction of training videos accepted by the threshold.
        threshold_rank: `threshold_from_train`'s rank; default DEAR's (`default_threshold_rank`).
        prediction: the closed-set prediction rule (`dear_ray.scores.predictions`); default DEAR's
            for the head and score (`default_prediction_rule`); a store without logits predicts
            its stored `pred`.
        decide: open-set decisions without a threshold: `decide(store) -> (N,)` ints in [0, K], K =
            unknown (OpenMax's argmax over K+1, DEAR `baseline_openmax.py`); default the stores'
            `decisions` when they have them. They then also are the closed-set predictions (DEAR's
            OpenMax accuracy counts a known video predicted unknown as wrong), `threshold` is NaN,
            and the score still drives the threshold-free metrics.
        mean_class: `closed_set_accuracy`'s mean class accuracy form.
        scuba, scufo: optional `test_scuba` / `test_scufo` stores (StillMix's static-bias sets:
            `scuba_top1`, `scufo_top1`, and `contrast_acc` with both; their SCUFO and SCUBA clips
            pair by video id, and a pair's labels must agree).
        threshold_print: `released` (a `get_threshold` threshold rounded to 6 decimals, as DEAR's
            tables used it) or `exact` (`report_threshold`).

    Without a threshold and without decisions (an imported store with neither), `open_maf1`, the
    binarised metrics and `threshold` are NaN, `curve` is None and nothing is rejected.
    """
    unknown = [unknown] if isinstance(unknown, ScoreStore) else list(unknown)
    if not unknown:
        raise ValueError("open_set_report: at least one unknown store is needed")
    k = _check_stores(train, known, unknown, shifted, scuba, scufo)
    if decide is None and known.decisions is not None and all(u.decisions is not None for u in unknown):
        decide = _stored_decisions
    rule = prediction or default_prediction_rule(known.meta.head, score)
    ks = known.score(score)
    us = np.concatenate([u.score(score) for u in unknown])
    uclasses = combine_unknown_classes(unknown)

    def closed(store: ScoreStore) -> np.ndarray:
        if decide is not None:
            return np.asarray(decide(store))
        return store.preds if store.logits is None else closed_predictions(store, rule)

    kp = closed(known)
    thr = float("nan")
    kd, ud = kp, np.concatenate([closed(u) for u in unknown])
    if decide is None:
        found = report_threshold(train, known, score, accept=accept, rank=threshold_rank,
                                 threshold_print=threshold_print)
        if found is not None:
            thr = float(found)
            kd, ud = np.where(ks > thr, k, kp), np.where(us > thr, k, ud)
    decided = decide is not None or not np.isnan(thr)
    if known.logits is None:
        ranking = None
    else:
        ranking = np.asarray(known.logits, dtype=np.float64) if decide is not None else class_probabilities(known, rule)
    accuracy = closed_set_accuracy(known.labels, kp, ranking, mean_class=mean_class)
    curve = open_set_f1_curve_from_decisions(known.labels, kd, uclasses, ud, num_known=k, num_trials=num_trials,
                                             seed=seed, subsets=subsets) if decided else None
    correct = kp == known.labels
    confidence = _confidence(known, score)
    nan = float("nan")
    metrics = {
        "closed_top1": accuracy["top1"],
        "closed_top5": accuracy["top5"],
        "closed_mean_class_acc": accuracy["mean_class_acc"],
        "open_maf1": open_macro_f1(curve) if decided else nan,
        **(binarized_metrics(kd == k, ud == k) if decided else dict.fromkeys(BINARIZED.values(), nan)),
        **ood_metrics(ks, us),
        "open_auc": open_auc(known.labels, kp, ks, us),
        "ece": ece(confidence, correct) if np.all(np.isfinite(confidence)) else nan,
        "threshold": thr,
    }
    shifted_correct = None
    if shifted is not None:
        shifted_correct = closed(shifted) == shifted.labels
        metrics["shifted_top1"] = float(np.mean(shifted_correct))
        metrics["static_bias_gap"] = metrics["closed_top1"] - metrics["shifted_top1"]
    scuba_correct = None if scuba is None else closed(scuba) == scuba.labels
    scufo_correct = None if scufo is None else closed(scufo) == scufo.labels
    if scuba is not None and scufo is not None:
        try:
            pair_by_video_id(scuba.video_ids, scufo.video_ids, scuba.labels, scufo.labels)
        except ValueError as err:
            raise ValueError(f"{scufo.path} against {scuba.path}: {err}") from None
    metrics.update(static_bias_metrics(
        scuba_correct=scuba_correct, scuba_ids=None if scuba is None else scuba.video_ids,
        scufo_correct=scufo_correct, scufo_ids=None if scufo is None else scufo.video_ids))
    metrics = {key: float(metrics[key]) for key in METRIC_KEYS if key in metrics}
    name = unknown[0].meta.dataset if len(unknown) == 1 else MERGED_UNKNOWN_SET
    uids = np.concatenate([u.video_ids if len(unknown) == 1 else
                           np.asarray([f"{u.meta.dataset}/{v}" for v in u.video_ids], dtype=object)
                           for u in unknown])
    return OpenSetReport(
        metrics=metrics, curve=curve, confusion=confusion_of_decisions(known.labels, kd, ud, num_known=k),
        unknown_set=name, known_scores=ks, unknown_scores=us, confidence=confidence, correct=correct,
        known_labels=known.labels, known_preds=kp, known_decisions=kd, unknown_classes=uclasses, unknown_decisions=ud,
        top5_hit=_top5_hit(known.labels, ranking) if ranking is not None else np.full(len(known), np.nan),
        shifted_correct=shifted_correct, known_ids=known.video_ids, unknown_ids=uids,
        shifted_ids=shifted.video_ids if shifted is not None else None,
        scuba_correct=scuba_correct, scuba_ids=None if scuba is None else scuba.video_ids,
        scufo_correct=scufo_correct, scufo_ids=None if scufo is None else scufo.video_ids)


def _stored_decisions(store: ScoreStore) -> np.ndarray:
    return store.decisions
