"""Evaluation after training (rank 0, whole splits): score stores, view averaging, precision.

`evaluate_splits` scores every split of `cfg.eval_splits()` and writes its store
(`<run_dir>/<name>/stores/<trial>/<split>.parquet`, `dear_ray.scores.store`).

View averaging (`eval.average_clips`): how the V test views (clips x crops) of a video are
combined, passed to `Recognizer.predict(average_clips=...)`: `score` = mean of the logits, `prob` =
mean of the per-view softmax (stored as its log). `released` reproduces DEAR's scripts
(`average_clips_for`):

| head | deterministic logits | stochastic passes | where (DEAR b752998 / SDN b92b9ca) |
|---|---|---|---|
| edl, edl_avu, dear, dear_alt | score | - | configs/recognition/*/inference_*_enn.py |
| softmax, train split | prob | prob | experiments/baseline_softmax.py (`average_clips='prob'`); get_threshold.py with inference_*_dnn.py |
| softmax, test splits | score | prob | baseline_openmax.py (`'score'`, then softmax) for MSP; ood_detection.py with inference_*_dnn.py (`'prob'`) for MC dropout |
| bnn, rpl | prob | prob | inference_*_bnn.py, inference_*_rpl.py |
| sdn | prob | - | SDN libs/test.py: softmax per clip, then the mean |

When the logits and the passes of a split need different averaging (softmax test splits with
`eval.stochastic_passes > 1`), the split is predicted twice.

Precision (`eval.precision`): stores are computed in fp32 unless `amp`, whatever
`resources.amp` says for training (bf16 autocast moves vacuity by ~1%, SPEC section 2).
Validation during training keeps the training autocast (its top-1 is not a stored score).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dear_ray.config import STOCHASTIC_HEADS, ExperimentConfig
from dear_ray.train.loop import Predictions, predict

AVERAGE_CLIPS_SETTINGS = ("released", "score", "prob")
EVIDENTIAL_HEADS = ("edl", "edl_avu", "dear", "dear_alt")
_PROB_HEADS = ("bnn", "rpl", "sdn")


def average_clips_for(head: str, split: str, setting: str, *, stochastic: bool = False) -> str:
    """How the test views of `split` are averaged for a model with `head`: `score` or `prob`.

    Args:
        head: the trained head (`model.head`).
        split: the evaluated split (`train` is the threshold split; every other is a test split).
        setting: `eval.average_clips`: `score` / `prob` as given, `released` per the module table.
        stochastic: for the stochastic passes (`sample_logits`) instead of the deterministic logits
            (they differ only for softmax test splits: MC dropout uses `prob`).
    """
    if setting not in AVERAGE_CLIPS_SETTINGS:
        raise ValueError(f"eval.average_clips must be one of {AVERAGE_CLIPS_SETTINGS}, got {setting!r}")
    if setting != "released":
        return setting
    if head in EVIDENTIAL_HEADS:
        return "score"
    if head in _PROB_HEADS:
        return "prob"
    if head == "softmax":
        return "prob" if stochastic or split == "train" else "score"
    raise ValueError(f"average_clips_for: no released view averaging known for head {head!r}")


def eval_autocast(cfg: ExperimentConfig, amp: bool) -> bool:
    """Whether the score stores run under autocast: only with `eval.precision: amp` and the
    training autocast available (`amp`: `resources.amp` on a GPU)."""
    return bool(amp) and cfg.eval.precision == "amp"


def mean_probability_logits(sample_logits: np.ndarray) -> np.ndarray:
    """``log(mean_s softmax(z_s))`` over the passes ``(S, N, K) -> (N, K)``: logits whose softmax is
    the mean probability over the passes, so their argmax is DEAR's stochastic prediction
    (experiments/ood_detection.py `run_stochastic_inference`: argmax of the mean of the passes'
    scores). The mean of the pass logits, used before, has another argmax in general."""
    z = np.asarray(sample_logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    m = log_p.max(axis=0)
    out = m + np.log(np.exp(log_p - m).mean(axis=0))
    return out.astype(np.float32)


def stores_dir(cfg: ExperimentConfig, trial_name: str) -> Path:
    """`<run_dir>/<name>/stores/<trial>/`."""
    return cfg.run_root() / "stores" / trial_name


def validate(model, cfg: ExperimentConfig, num_classes: int, device, amp: bool) -> float:
    """Top-1 on the `val` split (test pipeline, the released view averaging of `val`)."""
    from dear_ray.train.data import build_eval_loader

    loader = build_eval_loader(cfg, "val", num_classes=num_classes)
    how = average_clips_for(cfg.model.head, "val", cfg.eval.average_clips)
    return predict(model, loader, device=device, amp=amp, average_clips=how).top1()


def predict_split(model, loader, cfg: ExperimentConfig, split: str, *, device, amp: bool,
                  bad_report=None) -> Predictions:
    """One split's predictions with the head's stochastic passes and view averaging; bnn logits
    are the passes' mean probability (`mean_probability_logits`)."""
    head, setting = cfg.model.head, cfg.eval.average_clips
    passes = cfg.eval.stochastic_passes if head in STOCHASTIC_HEADS else 1
    how = average_clips_for(head, split, setting)
    how_passes = average_clips_for(head, split, setting, stochastic=True)
    if passes > 1 and how_passes != how:
        preds = predict(model, loader, device=device, amp=amp, bad_report=bad_report,
                        average_clips=how)
        sampled = predict(model, loader, device=device, stochastic_passes=passes, amp=amp,
                          bad_report=bad_report, average_clips=how_passes)
        if sampled.video_ids != preds.video_ids:
            raise RuntimeError(f"split {split}: the two prediction passes decoded different "
                               "videos (a flaky decoder?)")
        preds.sample_logits = sampled.sample_logits
    else:
        preds = predict(model, loader, device=device, stochastic_passes=passes, amp=amp,
                        bad_report=bad_report, average_clips=how)
    if head == "bnn":  # DEAR's BNN prediction: the mean over weight samples of their softmax
        preds.logits = mean_probability_logits(preds.sample_logits)
    return preds


def evaluate_splits(model, cfg: ExperimentConfig, trial: str, num_classes: int, device,
                    amp: bool, *, logger=None) -> dict[str, float]:
    """Score every split of `cfg.eval_splits()` and write its store.

    Args:
        amp: the training autocast is available (`resources.amp` on a GPU); the stores use it only
            with `eval.precision: amp`.

    Returns `<split>_top1` for known splits (`train_eval_top1` for the training split, scored with
    the test pipeline) and `<split>_bad_videos` for all.

    For the softmax and bnn heads `eval.stochastic_passes` passes are taken (MC dropout / weight
    sampling) and stored as `sample_logits`, so MC dropout is evaluated post hoc from this model.
    """
    from dear_ray.data.dataset import BadVideoReport
    from dear_ray.train.data import build_eval_loader, split_is_known

    out_dir = stores_dir(cfg, trial)
    out_dir.mkdir(parents=True, exist_ok=True)
    use_amp = eval_autocast(cfg, amp)
    metrics: dict[str, float] = {}
    for split in cfg.eval_splits():
        loader = build_eval_loader(cfg, split, num_classes=num_classes)
        report = BadVideoReport(len(loader.dataset), cfg.data.max_bad_fraction, name=split)
        preds = predict_split(model, loader, cfg, split, device=device, amp=use_amp,
                              bad_report=report)
        name = split if split_is_known(split) or split == "unknown" else f"unknown_{split}"
        path = write_store(out_dir / f"{name}.parquet", preds, cfg=cfg, split=split,
                           num_classes=num_classes, trial=trial)
        key = "train_eval" if split == "train" else split  # train_top1 is the training-time one
        if split_is_known(split):
            metrics[f"{key}_top1"] = preds.top1()
        metrics[f"{key}_bad_videos"] = float(len(preds.bad))
        if logger is not None:
            logger.log_artifact(path, artifact_path="stores")
    return metrics


def write_store(path: Path, preds: Predictions, *, cfg: ExperimentConfig, split: str,
                num_classes: int, trial: str) -> Path:
    """One split's score store (`dear_ray.scores.store`), with every score the head supports.

    Unknown sets are stored with `split="unknown"` and their name as `dataset`, in
    `unknown.parquet` (the set named `unknown`) or `unknown_<name>.parquet`. The meta records the
    view averaging and precision used (`average_clips`, `precision`).
    """
    from dear_ray.scores import compute_scores
    from dear_ray.scores.store import StoreMeta, write_score_store
    from dear_ray.train.data import split_is_known

    scores = compute_scores(cfg.model.head, preds.logits, sample_logits=preds.sample_logits)
    known = split_is_known(split)
    head, setting = cfg.model.head, cfg.eval.average_clips
    views = average_clips_for(head, split, setting)
    if preds.sample_logits is not None:
        views += f"/{average_clips_for(head, split, setting, stochastic=True)}"
    meta = StoreMeta(split=split if known else "unknown",
                     dataset=cfg.data.dataset if known else split, num_known=num_classes,
                     head=head, checkpoint=f"{trial}/epoch_{cfg.optim.epochs - 1}",
                     run=trial, extra={"backbone": cfg.model.backbone, "seed": str(cfg.seed),
                                       "name": cfg.name, "average_clips": views,
                                       "precision": cfg.eval.precision})
    write_score_store(path, video_ids=preds.video_ids, labels=preds.labels, logits=preds.logits,
                      features=preds.features, sample_logits=preds.sample_logits, scores=scores,
                      meta=meta)
    return path


__all__ = ["AVERAGE_CLIPS_SETTINGS", "average_clips_for", "eval_autocast", "evaluate_splits",
           "mean_probability_logits", "predict_split", "stores_dir", "validate", "write_store"]
