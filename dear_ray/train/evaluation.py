"""Evaluation after training: `evaluate_splits` scores every split of `cfg.eval_splits()` and
writes its store (`<run_dir>/<name>/stores/<trial>/<split>.parquet`, `dear_ray.scores.store`);
`validate` gives the `val` top-1 during training.

Both run on EVERY rank of a trial (collectives: each rank must call them), after the last
training epoch or, with `eval_only`, in place of training (`dear_ray.train.worker`). Each rank
predicts a shard of the split and rank 0 merges them (`dear_ray.train.sharding`), with the view
averaging and stochastic passes of `dear_ray.train.prediction`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from dear_ray.config import ExperimentConfig
from dear_ray.methods import head_spec
from dear_ray.splits import KNOWN_SPLITS, STATIC_BIAS_SPLITS
from dear_ray.train.loop import Predictions
from dear_ray.train.prediction import (  # noqa: F401  (re-exported: the sweep's dry run, tests)
    AVERAGE_CLIPS_SETTINGS,
    average_clips_for,
    eval_autocast,
    mean_probability_logits,
    predict_split,
)
from dear_ray.train.sharding import (  # noqa: F401  (re-exported: tests)
    Shard,
    _rank_world,
    batch_seed,
    merge_shards,
    predict_distributed,
    predict_shard,
    shard_range,
    sync_from_rank0,
)


def stores_dir(cfg: ExperimentConfig, trial_name: str) -> Path:
    """`<run_dir>/<name>/stores/<trial>/`."""
    return cfg.run_root() / "stores" / trial_name


def validate(model, cfg: ExperimentConfig, num_classes: int, device, amp: bool) -> float | None:
    """Top-1 on the `val` split (test pipeline, the released view averaging of `val`, no
    stochastic passes), sharded over the ranks (rank 0's model, `sync_from_rank0`); None on ranks
    other than 0."""
    sync_from_rank0(model)
    preds = predict_distributed(model, cfg, "val", num_classes=num_classes, device=device,
                                amp=amp, stochastic=False)
    return None if preds is None else preds.top1()


def _is_known(split: str) -> bool:
    """A split of known-class videos (labels in [0, K)): `KNOWN_SPLITS`, the static-bias splits
    `test_scuba` / `test_scufo` included; anything else is an unknown set."""
    return split in KNOWN_SPLITS


def store_name(split: str) -> str:
    """The store file's stem: the split, or `unknown_<name>` for an unknown set not named
    `unknown` (`val_unknown`, the validation unknowns, is no unknown set)."""
    return split if _is_known(split) or split in ("unknown", "val_unknown") else f"unknown_{split}"


def check_static_bias(cfg: ExperimentConfig, num_classes: int) -> None:
    """Before `test_scuba` / `test_scufo` are scored: their lists must pair (same video ids, same
    labels; `dear_ray.config.data.check_static_bias_lists`), else the report could not pair them.

    Raises:
        ValueError: every problem, one a line, naming the `data.static_bias` field and the file.
    """
    from dear_ray.config.data import check_static_bias_lists

    if not set(cfg.eval_splits()) & set(STATIC_BIAS_SPLITS):
        return
    problems = check_static_bias_lists(cfg.data, num_classes)
    if problems:
        raise ValueError("the static-bias lists cannot be scored:\n" + "\n".join(problems))


def evaluate_splits(model, cfg: ExperimentConfig, trial: str, num_classes: int, device,
                    amp: bool, *, logger=None) -> dict[str, float]:
    """Score every split of `cfg.eval_splits()` and write its store; called on EVERY rank.

    Args:
        model: the recognizer (unwrapped from DDP), on `device`.
        amp: the training autocast is available (`resources.amp` on a GPU); the stores use it only
            with `eval.precision: amp`.
        logger: rank 0's `TrialLogger` (stores are logged as artifacts), or None.

    Returns (rank 0; the other ranks get `{}`): `<split>_top1` for known splits
    (`train_eval_top1` for the training split, scored with the test pipeline),
    `<split>_bad_videos` for all, and `<split>_eval_time_s` (wall time of the sharded prediction,
    gather included; `train_eval_eval_time_s` for the training split) and `eval_workers` (the
    ranks that shared the splits).

    For the softmax and bnn heads `eval.stochastic_passes` passes are taken (MC dropout / weight
    sampling) and stored as `sample_logits`, so MC dropout is evaluated post hoc from this model.
    The static-bias splits (`test_scuba`, `test_scufo`) are known splits here; their lists are
    checked first (`check_static_bias`).
    """
    check_static_bias(cfg, num_classes)
    rank, world = _rank_world()
    sync_from_rank0(model)  # every shard is scored by the model of rank 0 (the checkpoint's)
    out_dir = stores_dir(cfg, trial)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    use_amp = eval_autocast(cfg, amp)
    metrics: dict[str, float] = {"eval_workers": float(world)} if rank == 0 else {}
    classifier = write_classifier_file(model, cfg, out_dir) if rank == 0 else None
    for split in cfg.eval_splits():
        clock = time.perf_counter()
        preds = predict_distributed(model, cfg, split, num_classes=num_classes, device=device,
                                    amp=use_amp)
        if preds is None:
            continue
        key = "train_eval" if split == "train" else split  # train_top1 is the training-time one
        metrics[f"{key}_eval_time_s"] = time.perf_counter() - clock
        path = write_store(out_dir / f"{store_name(split)}.parquet", preds, cfg=cfg, split=split,
                           num_classes=num_classes, trial=trial, classifier=classifier)
        if _is_known(split):
            metrics[f"{key}_top1"] = preds.top1()
        metrics[f"{key}_bad_videos"] = float(len(preds.bad))
        if rank == 0 and preds.bad:
            from dear_ray.train.bad_videos import append_bad_videos, bad_videos_dir

            append_bad_videos(bad_videos_dir(cfg.run_root(), trial) / "eval.csv", preds.bad,
                              split=split, epoch=None, rank=0)
        if logger is not None:
            logger.log_artifact(path, artifact_path="stores")
    return metrics


def write_classifier_file(model, cfg: ExperimentConfig, out_dir: Path) -> str | None:
    """Rank 0: the linear classifier of a softmax / sdn model beside its stores
    (`dear_ray.scores.write_classifier`: `classifier.npz`, weight (K, F), bias (K,)), which the
    post-hoc detectors ViM, ReAct and ASH need; the file name for the stores' metadata, or None.

    `logits = features @ W.T + b` holds for the score-averaged splits of every backbone (TSM too:
    fc is linear, so fc per segment then the mean equals fc of the segment-mean feature).
    """
    from dear_ray.scores.classifier import CLASSIFIER_FILE, write_classifier

    fc = getattr(getattr(model, "cls_head", None), "fc_cls", None)
    if not head_spec(cfg.model.head).posthoc or not isinstance(fc, torch.nn.Linear):
        return None
    bias = None if fc.bias is None else fc.bias.detach().float().cpu().numpy()
    write_classifier(out_dir, fc.weight.detach().float().cpu().numpy(), bias)
    return CLASSIFIER_FILE


def write_store(path: Path, preds: Predictions, *, cfg: ExperimentConfig, split: str,
                num_classes: int, trial: str, classifier: str | None = None) -> Path:
    """One split's score store (`dear_ray.scores.store`), with every score the head supports.

    Unknown sets are stored with `split="unknown"` and their name as `dataset`, in
    `unknown.parquet` (the set named `unknown`) or `unknown_<name>.parquet`; the validation
    unknowns with `split="val_unknown"` in `val_unknown.parquet`. The meta records the
    view averaging and precision used (`average_clips`, `precision`).
    """
    from dear_ray.scores import compute_scores
    from dear_ray.scores.store import StoreMeta, write_score_store

    # the evidence function of an evidential head (its `head_options`, `exp` by default): the
    # stores' vacuity and Dirichlet MSP, and the post-hoc evidential rows that read `extra`
    evidence = str(cfg.model.head_options.get("evidence", "exp"))
    scores = compute_scores(cfg.model.head, preds.logits, sample_logits=preds.sample_logits,
                            evidence=evidence)
    known = _is_known(split)
    head, setting = cfg.model.head, cfg.eval.average_clips
    views = average_clips_for(head, split, setting, backbone=cfg.model.backbone)
    if preds.sample_logits is not None:
        passes = average_clips_for(head, split, setting, backbone=cfg.model.backbone,
                                   stochastic=True)
        views += f"/{passes}"
    meta = StoreMeta(split=split if known or split == "val_unknown" else "unknown",
                     dataset=cfg.data.dataset if known else split, num_known=num_classes,
                     head=head, checkpoint=(cfg.model.pretrained if cfg.eval_only
                                            else f"{trial}/epoch_{cfg.optim.epochs - 1}"),
                     run=trial, extra={"backbone": cfg.model.backbone, "seed": str(cfg.seed),
                                       "name": cfg.name, "average_clips": views,
                                       # which videos: two data sets may share a name and ids
                                       "data_root": str(cfg.data.data_root),
                                       "precision": cfg.eval.precision,
                                       **({"evidence": evidence} if head_spec(head).evidential else {}),
                                       **({"classifier": classifier} if classifier else {})})
    write_score_store(path, video_ids=preds.video_ids, labels=preds.labels, logits=preds.logits,
                      features=preds.features, sample_logits=preds.sample_logits, scores=scores,
                      meta=meta)
    return path


__all__ = ["AVERAGE_CLIPS_SETTINGS", "Shard", "average_clips_for", "batch_seed", "check_static_bias",
           "eval_autocast", "evaluate_splits", "mean_probability_logits", "merge_shards",
           "predict_distributed", "predict_shard", "predict_split", "shard_range", "store_name",
           "stores_dir", "sync_from_rank0", "validate", "write_store"]
