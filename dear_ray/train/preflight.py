"""Checks that run in seconds, before Ray starts: data, lists, labels, checkpoint, run dir, store.

A missing data root or an out-of-range label would otherwise surface only inside a Ray worker,
half a minute later and buried in a traceback. `preflight(configs)` checks every config a command
is about to run and raises one `PreflightError` listing every problem, each naming the config
field, the file and the value:

    data.data_root: folder /data/ucf101 does not exist
    data.test_list: /data/lists/test.txt: line 12: label 99 is out of range; expected 0..9

What is checked (once per distinct value across the configs):
- `data.data_root` is a folder; each list of a split the run uses (train; val when validating;
  every evaluation split) and `data.classes_file` exist;
- every line of those lists parses and the known splits' labels lie in [0, K) (unknown sets carry
  their own class ids: not range-checked); the first `VIDEOS_CHECKED` videos of each list exist
  (all of them would be slow on network storage: `dear-ray data check` does that);
- the SDN side inputs (`data.scene_labels`, `data.detections`) exist;
- `model.pretrained` exists, is readable (a file, or a dear_ray checkpoint folder) and fits the
  configured model (shapes; every key with `eval_only`), checked on the meta device;
- `tracking.run_dir` can be created and written; with `tracking_uri`: the tracking store takes a
  write, and an existing experiment of the run keeps its artifacts in this run folder (a store
  shared by several run folders would otherwise put them into another one).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from dear_ray.config import ExperimentConfig

VIDEOS_CHECKED = 20
_FIELDS = {"train": "data.train_list", "val": "data.val_list", "test": "data.test_list",
           "test_shifted": "data.test_shifted_list", "test_scuba": "data.static_bias.scuba",
           "test_scufo": "data.static_bias.scufo", "val_unknown": "data.val_unknown"}


class PreflightError(ValueError):
    """Problems found before Ray starts; the message has one line per problem."""


def _num_classes(cfg: ExperimentConfig, problems: list[str]) -> int | None:
    from dear_ray.data.annotations import read_class_names

    if cfg.data.num_classes is not None:
        return cfg.data.num_classes
    path = cfg.data.resolve(cfg.data.classes_file)
    if path is None or not path.is_file():
        problems.append(f"data.classes_file: {path} does not exist")
        return None
    try:
        return len(read_class_names(path))
    except ValueError as err:
        problems.append(f"data.classes_file: {err}")
        return None


def _used_splits(cfg: ExperimentConfig) -> list[str]:
    splits = ["train", *cfg.eval_splits()]
    if cfg.eval.every_n_epochs and cfg.data.val_list is not None:
        splits.append("val")
    return list(dict.fromkeys(splits))


def _check_list(field: str, path: Path, root: Path, num_classes: int | None, known: bool,
                problems: list[str]) -> None:
    from dear_ray.data.annotations import read_annotation_list

    if not path.is_file():
        problems.append(f"{field}: list file {path} does not exist")
        return
    try:
        records = read_annotation_list(path, root, num_classes=num_classes if known else None,
                                       check_exists=False)
    except (ValueError, OSError) as err:
        problems.append(f"{field}: {err}")
        return
    if not records:
        problems.append(f"{field}: list file {path} lists no videos")
    missing = [r.path for r in records[:VIDEOS_CHECKED] if not r.path.exists()]
    if missing:
        problems.append(f"{field}: {len(missing)} of the first {min(len(records), VIDEOS_CHECKED)} "
                        f"videos of {path} do not exist under data.data_root {root}, e.g. "
                        f"{missing[0]}")


def _check_writable(field: str, folder: Path, problems: list[str]) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_check_"):
            pass
    except OSError as err:
        problems.append(f"{field}: cannot write to {folder}: {err.strerror or err}")


def _check_checkpoint_keys(cfg: ExperimentConfig) -> list[str]:
    """The checkpoint against the model it should load into, on the meta device (no weights
    are materialised): shapes, and with `eval_only` missing / unexpected keys."""
    from dear_ray.models.checkpoint import CheckpointError
    from dear_ray.train.pretrained import check_pretrained

    try:
        check_pretrained(cfg)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        return [f"model.pretrained: {err}"]
    return []


def check_config(cfg: ExperimentConfig, *, seen: set | None = None) -> list[str]:
    """The problems of one config (an empty list when it can run)."""
    seen = set() if seen is None else seen
    problems: list[str] = []
    data = cfg.data
    root = Path(data.data_root)

    def once(key) -> bool:
        if key in seen:
            return False
        seen.add(key)
        return True

    if not root.is_dir():
        if once(("root", root)):
            problems.append(f"data.data_root: folder {root} does not exist"
                            + ("" if root.parent.is_dir() else f" (nor does {root.parent})"))
    else:
        class_problems: list[str] = []
        num_classes = _num_classes(cfg, class_problems)
        if class_problems and once(("classes", data.classes_file, root)):
            problems += class_problems
        lists = data.split_lists()
        for split in _used_splits(cfg):
            path = lists.get(split)
            if path is None:
                continue
            field = _FIELDS.get(split, f"data.unknown.{split}")
            if once(("list", path, num_classes)):
                _check_list(field, path, root, num_classes, split in _FIELDS and split != "val_unknown",
                            problems)
        if {"test_scuba", "test_scufo"} & set(_used_splits(cfg)) and \
                once(("static_bias", str(data.static_bias), num_classes)):
            from dear_ray.config.data import check_static_bias_lists

            problems += check_static_bias_lists(data, num_classes)
        for field, value in (("data.scene_labels", data.scene_labels),
                             ("data.detections", data.detections)):
            path = data.resolve(value)
            if path is not None and not path.exists() and once(("side", path)):
                problems.append(f"{field}: {path} does not exist")
    pretrained = cfg.model.pretrained
    if pretrained is not None and once(("pretrained", pretrained, cfg.model.backbone,
                                        cfg.model.head, cfg.eval_only)):
        problems += _check_pretrained_file(cfg, Path(pretrained), data_ok=root.is_dir())
    run_dir = Path(cfg.tracking.run_dir)
    if once(("run_dir", run_dir)):
        _check_writable("tracking.run_dir", run_dir, problems)
    return problems


def _check_pretrained_file(cfg: ExperimentConfig, path: Path, *, data_ok: bool) -> list[str]:
    """`model.pretrained`: the file exists and reads, and (with the data in place) its tensors
    fit the model."""
    problems: list[str] = []
    if not path.exists():
        from dear_ray.models.backbones.weights import weights_hint

        hint = weights_hint(cfg.model.backbone)
        problems.append(f"model.pretrained: {path} does not exist" + (f" ({hint})" if hint else ""))
    elif path.is_file() and not os.access(path, os.R_OK):
        problems.append(f"model.pretrained: {path} is not readable")
    elif path.is_file():
        try:
            with path.open("rb") as fh:
                fh.read(1)
        except OSError as err:
            problems.append(f"model.pretrained: {path} cannot be read: {err.strerror or err}")
    if path.exists() and not problems and data_ok:
        problems += _check_checkpoint_keys(cfg)
    return problems


def preflight(configs: ExperimentConfig | Iterable[ExperimentConfig], *,
              tracking_uri: str | None = None) -> None:
    """Check every config (and the tracking store) before Ray starts.

    Raises:
        PreflightError: one line per problem, naming the field, the file and the value.
        TrackingError: the tracking store is unusable (`check_tracking_uri`).
    """
    configs = [configs] if isinstance(configs, ExperimentConfig) else list(configs)
    seen: set = set()
    problems: list[str] = []
    for cfg in configs:
        for problem in check_config(cfg, seen=seen):
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise PreflightError(problems[0] if len(problems) == 1 else
                             f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    if tracking_uri is not None:
        from dear_ray.tracking.mlflow_runs import artifact_location_conflict, check_tracking_uri

        check_tracking_uri(tracking_uri)
        for experiment, run_dir in dict.fromkeys((c.experiment_name(), c.tracking.run_dir)
                                                  for c in configs):
            conflict = artifact_location_conflict(tracking_uri, experiment, run_dir)
            if conflict is not None:
                raise PreflightError(f"tracking.experiment: {conflict}")


__all__ = ["PreflightError", "check_config", "preflight"]
