"""Static-bias metrics after SDN: SCUBA / SCUFO top-1 and contrast accuracy (StillMix, ICCV 2023).

StillMix ("Mitigating and Evaluating Static Bias of Action Representations in the Background and
the Foreground", Li et al., ICCV 2023; also ALBAR, ICLR 2025) measures how much a model relies on
static appearance with two test sets of KNOWN-class videos:
- SCUBA: the actors of the test videos pasted on backgrounds no training video shows. Top-1 on it
  (`scuba_top1`, higher is better) asks whether the action is still recognised off its scene.
- SCUFO: for each SCUBA video, ONE of its frames repeated for the clip's length: the appearance
  without the motion. StillMix draws that frame uniformly from the clip's sampled frames at test
  time (`TemporalSelect`, mmaction/datasets/blending_utils.py, lines 759-795: one index
  `randint(clip_len)`, the frame stacked `clip_len` times); the synthetic generator does the same
  once, into `test_scufo`. Top-1 on it (`scufo_top1`) is LOWER-is-better: a still frame carries no
  motion, so a model that names its action reads the answer off the appearance.
- Contrast accuracy (`contrast_acc`, higher is better): the fraction of videos whose SCUBA clip is
  classified RIGHT and whose SCUFO clip WRONG (StillMix `tools/compare_SCUBA_SCUFO_results.py`,
  lines 20-33: one list file gives the labels, the two result files are indexed by the same line
  number `ii`, and the count of `argmax(res1[ii]) == label and argmax(res2[ii]) != label` is divided
  by the number of lines). Here a SCUFO clip pairs with the SCUBA clip of the SAME VIDEO ID (which
  is what StillMix's shared list amounts to, and survives videos dropped as undecodable); the
  denominator is the number of pairs, the videos present in both stores.

"Right" is the closed-set decision of the row's method (`dear_ray.scores.predictions`, OpenMax's
argmax over K+1 classes: an `unknown` decision is wrong), as for `shifted_top1`.

Everything here is a numpy function of correctness arrays and video ids; `resample_static_bias`
gives the bootstrap values of all three metrics from a caller-supplied index draw, so
`dear_ray.metrics.bootstrap` and `dear_ray.metrics.protocols` share one implementation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

STATIC_BIAS_KEYS = ("scuba_top1", "scufo_top1", "contrast_acc")
#: resample keys (the `split` of the draw) and pairing keys of `BootstrapResult.ids`
SCUBA_DRAW, SCUFO_DRAW, PAIRS_DRAW = "test_scuba", "test_scufo", "scuba_scufo_pairs"

Draw = Callable[[str, int], np.ndarray]  # (split, n) -> (B, n) indices into n videos sorted by id


def _unique(ids: np.ndarray, what: str) -> None:
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{what}: video id {str(values[counts > 1][0])!r} appears {counts.max()} times; "
                         "SCUBA and SCUFO clips are paired by video id, which must be unique")


def pair_by_video_id(scuba_ids, scufo_ids, scuba_labels=None, scufo_labels=None) -> tuple[np.ndarray, np.ndarray]:
    """The SCUBA / SCUFO clips that pair up: a SCUFO clip with the SCUBA clip of the same id.

    Args:
        scuba_ids: `(Na,)` video ids of the SCUBA clips; scufo_ids: `(Nb,)` of the SCUFO clips.
        scuba_labels, scufo_labels: optional `(Na,)`, `(Nb,)` labels; a pair must agree.

    Returns:
        `(scuba_rows, scufo_rows)`: `(P,)` int64 indices into each, the pairs sorted by video id.

    Raises:
        ValueError: an id twice in one set, or a pair whose labels differ.
    """
    a, b = np.asarray(scuba_ids).astype(str), np.asarray(scufo_ids).astype(str)
    _unique(a, "SCUBA clips")
    _unique(b, "SCUFO clips")
    common, rows_a, rows_b = np.intersect1d(a, b, assume_unique=True, return_indices=True)
    if scuba_labels is not None and scufo_labels is not None:
        la, lb = np.asarray(scuba_labels)[rows_a], np.asarray(scufo_labels)[rows_b]
        if (la != lb).any():
            i = int(np.flatnonzero(la != lb)[0])
            raise ValueError(f"SCUFO clip {str(common[i])!r} has label {lb[i]}, its SCUBA clip {la[i]}: a "
                             "SCUFO clip is one frame of its SCUBA clip, with the same label")
    return rows_a.astype(np.int64), rows_b.astype(np.int64)


def top1(correct) -> float:
    """Top-1 accuracy from `(N,)` booleans (NaN for no clip)."""
    c = np.asarray(correct, dtype=bool)
    return float(c.mean()) if c.size else float("nan")


def contrast_accuracy(scuba_correct, scufo_correct) -> float:
    """Fraction of pairs right on SCUBA and wrong on SCUFO; `(P,)` booleans aligned pair by pair
    (`pair_by_video_id`); NaN without pairs."""
    a, b = np.asarray(scuba_correct, dtype=bool), np.asarray(scufo_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"contrast_accuracy: {a.shape[0]} SCUBA and {b.shape[0]} SCUFO results; pass "
                         "the paired clips (pair_by_video_id)")
    return top1(a & ~b)


def static_bias_metrics(*, scuba_correct=None, scuba_ids=None, scufo_correct=None, scufo_ids=None) -> dict[str, float]:
    """`scuba_top1` (with SCUBA clips), `scufo_top1` (with SCUFO clips) and `contrast_acc` (with
    both), from `(N,)` correctness arrays and their video ids."""
    out = {}
    if scuba_correct is not None:
        out["scuba_top1"] = top1(scuba_correct)
    if scufo_correct is not None:
        out["scufo_top1"] = top1(scufo_correct)
    if scuba_correct is not None and scufo_correct is not None:
        a, b = pair_by_video_id(scuba_ids, scufo_ids)
        out["contrast_acc"] = contrast_accuracy(np.asarray(scuba_correct)[a], np.asarray(scufo_correct)[b])
    return out


def _sorted(ids) -> tuple[np.ndarray, tuple]:
    order = np.argsort(np.asarray(ids).astype(str), kind="stable")
    return order, tuple(np.asarray(ids)[order])


def _resampled_mean(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return np.full(index.shape[0], np.nan)
    return values[index].mean(axis=1)


def resample_static_bias(*, scuba_correct=None, scuba_ids=None, scufo_correct=None, scufo_ids=None,
                         draw: Draw) -> tuple[dict[str, np.ndarray], dict[str, tuple]]:
    """The bootstrap values of `static_bias_metrics` and the ids that pair two results.

    Each set is resampled on its own, with replacement, from its videos SORTED BY VIDEO ID (as
    `shifted_top1`): SCUBA clips with `draw(SCUBA_DRAW, Na)`, SCUFO clips with
    `draw(SCUFO_DRAW, Nb)`, and contrast accuracy over the pairs with `draw(PAIRS_DRAW, P)` (a
    pair is resampled as a unit: its two clips are the same video).

    Returns:
        (values: key -> `(B,)`, ids: `scuba` / `scufo` / `pairs` -> the sorted ids the draws index).
    """
    values: dict[str, np.ndarray] = {}
    ids: dict[str, tuple] = {}
    if scuba_correct is not None:
        order, ids["scuba"] = _sorted(scuba_ids)
        values["scuba_top1"] = _resampled_mean(np.asarray(scuba_correct, bool)[order], draw(SCUBA_DRAW, order.size))
    if scufo_correct is not None:
        order, ids["scufo"] = _sorted(scufo_ids)
        values["scufo_top1"] = _resampled_mean(np.asarray(scufo_correct, bool)[order], draw(SCUFO_DRAW, order.size))
    if scuba_correct is not None and scufo_correct is not None:
        a, b = pair_by_video_id(scuba_ids, scufo_ids)
        hit = np.asarray(scuba_correct, bool)[a] & ~np.asarray(scufo_correct, bool)[b]
        values["contrast_acc"] = _resampled_mean(hit, draw(PAIRS_DRAW, a.size))
        ids["pairs"] = tuple(np.asarray(scuba_ids)[a])
    return values, ids


#: the splits (keys of `BootstrapResult.ids`) each metric's resamples depend on, for pairing
PAIRING_SPLITS = {"scuba_top1": ("scuba",), "scufo_top1": ("scufo",), "contrast_acc": ("pairs",)}
