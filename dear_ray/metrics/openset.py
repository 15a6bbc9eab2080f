"""Open-set macro-F1 and the openness curve (docs/metrics.md; DEAR's Fig. 1 and "Open maF1").

Predictions whose uncertainty exceeds the threshold become class K ("unknown"); macro-F1 is taken
over the K+1 classes, exactly as scikit-learn's `f1_score(average='macro')` does it (over the union
of labels present in the truth and the predictions). For n = 1..U unknown classes, `num_trials`
random class subsets are scored; the subsets are drawn once from a seeded generator and can be
shared between methods (`draw_unknown_subsets`) so every method sees the same draws.

Speed: the per-class counts of the known set and of each unknown class are computed once; a
subset's confusion counts are a sum of per-class rows, so all subsets of all n are one matrix
product (U = 305 classes x 10 trials in milliseconds instead of 3,050 sklearn calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dear_ray.metrics._checks import labels_1d, positive_int, same_length, scores_1d
from dear_ray.metrics.ood import openness


@dataclass(frozen=True)
class OpennessCurve:
    """Open-set macro-F1 against openness.

    Attributes:
        num_known: K.
        num_unknown_classes: `(L+1,)` n = 0, 1, ..., L (point 0: known classes only).
        openness: `(L+1,)` `1 - sqrt(2K / (2K + n))`, fractions.
        f1_mean: `(L+1,)` mean macro-F1 over the trials at each n.
        f1_std: `(L+1,)` population standard deviation over the trials (0 at n = 0).
        f1_trials: `(L+1, R)` macro-F1 of every trial (row 0 repeats the known-only value).
    """

    num_known: int
    num_unknown_classes: np.ndarray
    openness: np.ndarray
    f1_mean: np.ndarray
    f1_std: np.ndarray
    f1_trials: np.ndarray


def draw_unknown_subsets(unknown_class_ids, *, num_trials: int = 10, seed: int = 0) -> list[list[np.ndarray]]:
    """Random unknown-class subsets, drawn once so that several methods can share them.

    Args:
        unknown_class_ids: the unknown classes' ids (duplicates are ignored, e.g. per-video labels).
        num_trials: subsets per subset size.
        seed: seed of `numpy.random.default_rng`.

    Returns:
        `subsets[n - 1][t]`: sorted class ids of trial t with n classes, n = 1..U.
    """
    ids = np.unique(labels_1d(unknown_class_ids, "unknown_class_ids"))
    trials = positive_int(num_trials, "num_trials")
    rng = np.random.default_rng(seed)
    pool = np.broadcast_to(ids, (trials, ids.size))
    subsets = []
    for n in range(1, ids.size + 1):
        draws = np.sort(rng.permuted(pool, axis=1)[:, :n], axis=1)  # one permutation per trial
        subsets.append(list(draws))
    return subsets


DEAR_STREAM_SEED = 123  # compare_openness.py: np.random.seed(123) before the first method


def draw_dear_stream_subsets(num_classes: int, *, num_trials: int = 10, position: int = 0,
                             seed: int = DEAR_STREAM_SEED) -> list[list[np.ndarray]]:
    """The unknown-class subsets DEAR's `compare_openness.py` draws for one method.

    The script seeds numpy's global generator once (`np.random.seed(123)`) and, method after
    method in the order of its `--baselines`, draws `np.random.choice(U, n, replace=False)` for
    n = 1..U and `num_trials` trials each: one stream continuing across the methods, so each
    method sees other subsets. `position` is the number of methods before this one (DEAR's TSM
    `run_openness.sh`: MC dropout 0, BNN 1, DEAR 2). `draw_unknown_subsets` is the shared
    alternative (every method the same subsets).

    Args:
        num_classes: U, the unknown data set's class count (`--ood_ncls`: 51, 305); the class ids
            are 0..U-1.
        num_trials: subsets per n (`--num_rand`).
        position: methods drawn before this one from the same stream.
        seed: the script's seed.

    Returns:
        `subsets[n - 1][t]`: sorted class ids, as `draw_unknown_subsets`.
    """
    u = positive_int(num_classes, "num_classes")
    trials = positive_int(num_trials, "num_trials")
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or position < 0:
        raise ValueError(f"position={position!r}; expected an integer >= 0")
    stream = np.random.RandomState(seed)
    for _ in range(position):
        for n in range(1, u + 1):
            for _ in range(trials):
                stream.choice(u, n, replace=False)
    return [[np.sort(stream.choice(u, n, replace=False)) for _ in range(trials)] for n in range(1, u + 1)]


def _subset_matrix(subsets, class_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Indicator matrix `(L * R, U)` of the subsets, rows ordered level-major; checks every entry."""
    if len(subsets) == 0:
        raise ValueError("subsets: is empty; expected subsets[n-1][t] for n = 1..L")
    num_trials = len(subsets[0])
    for level, trials in enumerate(subsets, start=1):
        if len(trials) != num_trials or num_trials == 0:
            raise ValueError(f"subsets[{level - 1}] has {len(trials)} trials, expected {num_trials} "
                             "(the same positive number at every n)")
    flat = [np.asarray(subset).ravel() for trials in subsets for subset in trials]
    sizes = np.array([f.size for f in flat])
    expected = np.repeat(np.arange(1, len(subsets) + 1), num_trials)
    ids = np.concatenate(flat)
    pos = np.minimum(np.searchsorted(class_ids, ids), class_ids.size - 1)
    rows = np.repeat(np.arange(sizes.size), sizes)
    z = np.zeros((sizes.size, class_ids.size))
    if np.array_equal(sizes, expected) and np.array_equal(class_ids[pos], ids):
        z[rows, pos] = 1.0
        if np.array_equal(z.sum(axis=1), expected):
            return z, num_trials
    for row, subset in enumerate(flat):  # locate the first bad subset for the message
        level, t = divmod(row, num_trials)
        where = f"subsets[{level}][{t}]"
        if subset.size != level + 1 or np.unique(subset).size != level + 1:
            raise ValueError(f"{where} must hold {level + 1} distinct class ids, got {subset.tolist()}")
        missing = np.setdiff1d(subset, class_ids)
        if missing.size:
            raise ValueError(f"{where} names class id(s) {missing.tolist()} that have no unknown samples "
                             f"(unknown classes: {class_ids.size} ids in [{class_ids.min()}, {class_ids.max()}])")
    raise AssertionError("unreachable: a subset failed a check but none was found")  # pragma: no cover


def open_set_f1_curve(known_labels, known_preds, known_scores, unknown_classes, unknown_preds, unknown_scores,
                      threshold: float, *, num_trials: int = 10, seed: int = 0,
                      subsets: Sequence[Sequence[np.ndarray]] | None = None,
                      num_known: int | None = None) -> OpennessCurve:
    """Open-set macro-F1 for n = 0..L unknown classes.

    Args:
        known_labels: `(Nk,)` true classes of the known test samples, in [0, K).
        known_preds: `(Nk,)` closed-set predictions, in [0, K).
        known_scores: `(Nk,)` uncertainties.
        unknown_classes: `(Nu,)` the unknown data set's class id of each unknown sample.
        unknown_preds: `(Nu,)` closed-set predictions of the unknown samples, in [0, K).
        unknown_scores: `(Nu,)` uncertainties.
        threshold: samples with score > threshold are predicted as class K (unknown).
        num_trials: random subsets per n (ignored when `subsets` is given).
        seed: seed of the subsets (ignored when `subsets` is given).
        subsets: `subsets[n-1][t]` = class ids of trial t with n classes (see `draw_unknown_subsets`);
            default: drawn here from the unknown classes present.
        num_known: K; default `max(labels, predictions) + 1`, which is wrong only for the openness
            axis when the last known classes are absent from both: pass it when in doubt.
    """
    if num_known is not None:
        num_known = positive_int(num_known, "num_known")
    y = labels_1d(known_labels, "known_labels", num_classes=num_known)
    p = labels_1d(known_preds, "known_preds", num_classes=num_known)
    s = scores_1d(known_scores, "known_scores")
    same_length(known_labels=y, known_preds=p, known_scores=s)
    c = labels_1d(unknown_classes, "unknown_classes")
    q = labels_1d(unknown_preds, "unknown_preds", num_classes=num_known)
    su = scores_1d(unknown_scores, "unknown_scores")
    same_length(unknown_classes=c, unknown_preds=q, unknown_scores=su)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold={threshold!r}; expected a finite number")
    k = num_known if num_known is not None else int(max(y.max(), p.max(), q.max())) + 1
    return open_set_f1_curve_from_decisions(y, np.where(s > threshold, k, p), c, np.where(su > threshold, k, q),
                                            num_known=k, num_trials=num_trials, seed=seed, subsets=subsets)


def open_set_f1_curve_from_decisions(known_labels, known_decisions, unknown_classes, unknown_decisions, *,
                                     num_known: int, num_trials: int = 10, seed: int = 0,
                                     subsets: Sequence[Sequence[np.ndarray]] | None = None) -> OpennessCurve:
    """The openness curve of given open-set decisions in [0, K] (K = unknown), e.g. OpenMax's
    argmax over K+1 classes (DEAR `baseline_openmax.py`), no threshold.

    Args:
        known_labels: `(Nk,)` true classes in [0, K).
        known_decisions: `(Nk,)` decisions in [0, K].
        unknown_classes: `(Nu,)` the unknown data set's class id of each unknown sample.
        unknown_decisions: `(Nu,)` decisions in [0, K].
        num_known: K.
        num_trials, seed, subsets: as `open_set_f1_curve`.
    """
    k = positive_int(num_known, "num_known")
    y = labels_1d(known_labels, "known_labels", num_classes=k)
    p_open = labels_1d(known_decisions, "known_decisions", num_classes=k + 1)
    same_length(known_labels=y, known_decisions=p_open)
    c = labels_1d(unknown_classes, "unknown_classes")
    q_open = labels_1d(unknown_decisions, "unknown_decisions", num_classes=k + 1)
    same_length(unknown_classes=c, unknown_decisions=q_open)
    counts = _class_counts(y, p_open, c, q_open, k)
    if subsets is None:
        subsets = draw_unknown_subsets(counts.class_ids, num_trials=num_trials, seed=seed)
    z, trials = _subset_matrix(subsets, counts.class_ids)
    macro = macro_f1_of_subsets(counts, z)  # (1, 1 + rows)
    per_trial = _per_trial(macro, len(subsets), trials)[0]
    n = np.arange(len(subsets) + 1)
    return OpennessCurve(num_known=k, num_unknown_classes=n, openness=np.asarray(openness(k, n)),
                         f1_mean=per_trial.mean(axis=1), f1_std=per_trial.std(axis=1), f1_trials=per_trial)


@dataclass(frozen=True)
class ClassCounts:
    """Per-class counts behind every subset's macro-F1; a leading axis B holds bootstrap resamples.

    Attributes:
        tp_known: `(B, K)` known samples predicted as their own class.
        support_known: `(B, K)` known samples per class.
        pred_known: `(B, K+1)` known samples per decision (column K = rejected).
        per_class: `(B, U, K+1)` unknown samples of class u per decision.
        class_ids: `(U,)` the unknown classes' ids.
    """

    tp_known: np.ndarray
    support_known: np.ndarray
    pred_known: np.ndarray
    per_class: np.ndarray
    class_ids: np.ndarray


def _class_counts(y, p_open, c, q_open, k: int) -> ClassCounts:
    class_ids, class_index = np.unique(c, return_inverse=True)
    per_class = np.zeros((class_ids.size, k + 1))
    np.add.at(per_class, (class_index, q_open), 1.0)
    return ClassCounts(tp_known=np.bincount(y[p_open == y], minlength=k).astype(np.float64)[None],
                       support_known=np.bincount(y, minlength=k).astype(np.float64)[None],
                       pred_known=np.bincount(p_open, minlength=k + 1).astype(np.float64)[None],
                       per_class=per_class[None], class_ids=class_ids)


def macro_f1_of_subsets(counts: ClassCounts, z: np.ndarray) -> np.ndarray:
    """`(B, 1 + rows)` macro-F1 over K+1 classes: column 0 with no unknown class, then one per row
    of the subset indicator `z` `(rows, U)`. sklearn's `f1_score(average='macro')`: classes absent
    from both truth and prediction are left out of the mean."""
    k = counts.tp_known.shape[1]
    z = np.vstack([np.zeros((1, z.shape[1])), z])  # point 0: no unknown class
    added = np.einsum("ru,buc->brc", z, counts.per_class)  # (B, rows, K+1) from the subset's unknowns
    class_sizes = counts.per_class.sum(axis=2)  # (B, U)
    tp = np.empty_like(added)
    tp[:, :, :k] = counts.tp_known[:, None]
    tp[:, :, k] = added[:, :, k]
    # 2 tp + fp + fn = support + predicted count
    denom = np.empty_like(added)
    denom[:, :, :k] = (counts.support_known + counts.pred_known[:, :k])[:, None] + added[:, :, :k]
    denom[:, :, k] = class_sizes @ z.T + counts.pred_known[:, k:k + 1] + added[:, :, k]
    present = denom > 0
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(denom), where=present)
    return f1.sum(axis=2) / present.sum(axis=2)


def _per_trial(macro: np.ndarray, levels: int, trials: int) -> np.ndarray:
    """`(B, L+1, R)` from `(B, 1 + L*R)` (row 0 repeats the known-only value)."""
    b = macro.shape[0]
    return np.concatenate([np.repeat(macro[:, :1, None], trials, axis=2),
                           macro[:, 1:].reshape(b, levels, trials)], axis=1)


def open_macro_f1(curve: OpennessCurve) -> float:
    """The paper's "Open maF1": `sum_n O(n) F1(n) / sum_n O(n)` over the curve's points."""
    weights = np.asarray(curve.openness, dtype=np.float64)
    if weights.sum() <= 0:
        raise ValueError("open_macro_f1: the curve has no point with openness > 0 (no unknown classes)")
    return float(np.sum(weights * curve.f1_mean) / weights.sum())
