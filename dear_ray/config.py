"""The typed experiment configuration: one frozen pydantic model, validated once at the edge.

    cfg = load_config("configs/tiny.yaml", overrides={"optim.lr": 1e-3})
    cfg = cfg.override({"model.head": "edl"})       # a validated copy
    save_config(cfg, run_dir / "config.yaml")       # the resolved config, beside the checkpoints

Every section forbids unknown keys. An error is a `ConfigError` (a `ValueError`) with one line per
problem naming the dotted field, the bad value and what is allowed; when the config came from a
file, the file is named first.

Paths: `data.data_root` and `tracking.run_dir` are made absolute against the current directory when
the config is validated, so Ray workers (whose working directory differs) see the same files.
List files, the classes file and the SDN side inputs are relative to `data.data_root` unless
absolute.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")
KNOWN_SPLITS = ("train", "val", "test", "test_shifted")
STOCHASTIC_HEADS = ("softmax", "bnn")  # heads whose T stochastic passes are stored (SPEC 1.1, 1.6)


class ConfigError(ValueError):
    """An invalid experiment config; the message names the dotted field, the value and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class TestViews(_Section):
    """Test-time views: `num_clips` temporal clips x `num_crops` spatial crops (1, 3 or 10)."""

    num_clips: int = Field(1, ge=1)
    num_crops: Literal[1, 3, 10] = 1


class MultiScaleCropConfig(_Section):
    """`train_crop: multiscale` (MMAction2 `MultiScaleCrop`): crop sides are the short side times
    one of `scales` (width and height levels at most `max_wh_scale_gap` apart; 0 = square crops),
    placed at one of `num_fixed_crops` positions (5: corners and centre), then resized to
    `crop_size`. Defaults are MMAction2's TSM training crop; DEAR's I3D uses scales (1, 0.8) with
    gap 0 and 5 positions, SDN's corner crop five scales 0.84 apart with gap 0 and 5 positions."""

    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_wh_scale_gap: int = Field(1, ge=0)
    num_fixed_crops: Literal[5, 13] = 13

    @field_validator("scales")
    @classmethod
    def _scales(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.0 < s <= 1.0 for s in value):
            raise ValueError(f"expected one or more scales in (0, 1], got {list(value)}")
        return value


class DataConfig(_Section):
    """Where the videos are and how clips are drawn from them.

    `unknown` maps an unknown data set's name (the name of its score store split) to its list file.
    The classifier's width is `num_classes` when given, else the number of lines of `classes_file`.
    Samplers (MMAction2): `sample_frames` draws a clip of `clip_len` frames every `frame_interval`
    (at test time `test_views.num_clips` evenly spaced clips); `dense` draws it inside a
    `sample_range`-frame window (at test time `test_views.num_clips` window positions); `segments`
    takes `num_segments` frames as one clip (TSN/TSM): with `segment_sampling: uniform` one frame
    of each of `num_segments` equal segments (random in training, centres at test), with `dense`
    frames `sample_range // num_segments` apart in a `sample_range`-frame window at a random start
    (DEAR's TSM, MMAction2 `DenseSampleFrames(clip_len=1, num_clips=num_segments)`); at test time
    `test_views.num_clips` > 1 gives that many evenly spaced dense windows in both modes (DEAR's
    TSM test). Training takes one clip a video. `test_sampler` (default: `sampler`) draws the test
    views (val, test, unknown sets): DEAR trains I3D with `dense` and tests it with
    `sample_frames` (a centred clip). Test views are resized to `test_scale_short` and cropped to
    `test_crop_size` (default: `scale_short` / `crop_size`).
    `train_crop`: `random_resized` (SlowFast/TPN), `multiscale` (TSN/TSM, DEAR's I3D, SDN; see
    `multiscale`) or `center`. `color_jitter`: MMAction2's `ColorJitter(color_space_aug=True)`
    on training clips (TPN's configs; `dear_ray.data.color`).
    """

    dataset: str = "synth"
    data_root: str = "data/synth"
    train_list: str | None = "train.txt"
    val_list: str | None = "val.txt"
    test_list: str | None = "test.txt"
    test_shifted_list: str | None = "test_shifted.txt"
    unknown: dict[str, str] = Field(default_factory=lambda: {"unknown": "unknown.txt"})
    classes_file: str | None = "classes.txt"
    num_classes: int | None = Field(None, ge=2)
    sampler: Literal["sample_frames", "dense", "segments"] = "sample_frames"
    test_sampler: Literal["sample_frames", "dense", "segments"] | None = None
    clip_len: int = Field(8, ge=1)
    frame_interval: int = Field(1, ge=1)
    num_segments: int = Field(8, ge=1)
    segment_sampling: Literal["uniform", "dense"] = "uniform"
    sample_range: int = Field(64, ge=1)
    test_views: TestViews = Field(default_factory=TestViews)
    train_crop: Literal["random_resized", "multiscale", "center"] = "random_resized"
    multiscale: MultiScaleCropConfig = Field(default_factory=MultiScaleCropConfig)
    color_jitter: bool = False
    flip: bool = True
    crop_size: int = Field(56, ge=8)
    scale_short: int = Field(64, ge=8)
    test_crop_size: int | None = Field(None, ge=8)
    test_scale_short: int | None = Field(None, ge=8)
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)
    multiprocessing_context: Literal["forkserver", "spawn"] = "forkserver"
    max_bad_fraction: float = Field(0.05, ge=0.0, le=1.0)
    scene_labels: str | None = None
    detections: str | None = None
    mask_ratio: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("data_root")
    @classmethod
    def _absolute_root(cls, value: str) -> str:
        if not value:
            raise ValueError("expected a folder path, got an empty string")
        return str(Path(value).expanduser().absolute())

    @field_validator("unknown")
    @classmethod
    def _unknown_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in KNOWN_SPLITS or not _NAME.match(name):
                raise ValueError(f"unknown set name {name!r}: expected letters, digits, '_.=-' and "
                                 f"not one of the known split names {list(KNOWN_SPLITS)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.num_classes is None and self.classes_file is None:
            raise ValueError("give data.num_classes or data.classes_file (one class name a line)")
        if self.crop_size > self.scale_short:
            raise ValueError(f"data.crop_size {self.crop_size} is larger than data.scale_short "
                             f"{self.scale_short}: the short side is resized before cropping")
        test_crop = self.test_crop_size or self.crop_size
        test_scale = self.test_scale_short or self.scale_short
        if test_crop > test_scale:
            raise ValueError(f"data.test_crop_size {test_crop} is larger than data.test_scale_short "
                             f"{test_scale} (unset fields take crop_size / scale_short)")
        frames = {"segments": self.num_segments}  # frames a clip, by sampler
        train_t = frames.get(self.sampler, self.clip_len)
        test_t = frames.get(self.test_sampler or self.sampler, self.clip_len)
        if train_t != test_t:
            raise ValueError(f"data.test_sampler {self.test_sampler!r} gives clips of {test_t} "
                             f"frames, data.sampler {self.sampler!r} of {train_t}: the model "
                             "expects the same clip length (set clip_len = num_segments)")
        windows = self.segment_sampling == "dense" or self.test_views.num_clips > 1
        uses_segments = "segments" in (self.sampler, self.test_sampler)
        if uses_segments and windows and self.sample_range < self.num_segments:
            raise ValueError(f"data.sample_range {self.sample_range} is smaller than "
                             f"data.num_segments {self.num_segments}: the segments sampler's dense "
                             "windows (segment_sampling dense, or test_views.num_clips > 1) need "
                             "sample_range >= num_segments")
        if self.mask_ratio > 0 and self.detections is None:
            raise ValueError(f"data.mask_ratio {self.mask_ratio} > 0 needs data.detections "
                             "(human boxes to mask)")
        return self

    def resolve(self, path: str | None) -> Path | None:
        """A list/classes/side-input path made absolute against `data_root`."""
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.data_root) / p

    def split_lists(self) -> dict[str, Path]:
        """Every configured split -> its list file: train, val, test, test_shifted, unknown sets."""
        known = {"train": self.train_list, "val": self.val_list, "test": self.test_list,
                 "test_shifted": self.test_shifted_list}
        out = {k: self.resolve(v) for k, v in known.items() if v is not None}
        out.update({k: self.resolve(v) for k, v in self.unknown.items()})
        return out


class ModelConfig(_Section):
    """A recognizer: registered backbone and head names, and their builders' options.

    `pretrained`: an MMAction2 / DEAR model-zoo `.pth`, or a dear_ray checkpoint folder (e.g. the
    last `checkpoint_epoch_*` of an earlier trial), made absolute and loaded before training; a
    classifier of another width is skipped.
    """

    backbone: str = "i3d_tiny"
    head: str = "softmax"
    backbone_options: dict[str, Any] = Field(default_factory=dict)
    head_options: dict[str, Any] = Field(default_factory=dict)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    pretrained: str | None = None

    @field_validator("pretrained")
    @classmethod
    def _absolute_checkpoint(cls, value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser().absolute())

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        from dear_ray.models import list_backbones

        return _check_name(value, list_backbones(), "backbone")

    @field_validator("head")
    @classmethod
    def _known_head(cls, value: str) -> str:
        from dear_ray.models import list_heads

        return _check_name(value, list_heads(), "head")


class OptimConfig(_Section):
    """Optimiser and learning-rate schedule (SPEC section 3).

    The schedule is evaluated per iteration (`step_per: iteration`, fractional epochs) or once per
    epoch; `warmup_epochs` ramps the lr linearly from `warmup_start * lr` to the schedule's value.
    SDN's warm-up: for the first `new_layers_warmup_epochs` epochs only the parameters that
    `model.pretrained` did not provide (the scene MLP, a replaced classifier; every parameter when
    nothing is pretrained) train, at `new_layer_lr` (default `lr`); then all train on the schedule.
    """

    optimizer: Literal["sgd", "adamw"] = "sgd"
    epochs: int = Field(10, ge=1)
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0.0)
    schedule: Literal["step", "cosine"] = "step"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    min_lr: float = Field(0.0, ge=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    warmup_start: float = Field(0.1, ge=0.0, le=1.0)
    step_per: Literal["iteration", "epoch"] = "iteration"
    classifier_lr_mult: float = Field(1.0, gt=0.0)
    new_layers_warmup_epochs: int = Field(0, ge=0)
    new_layer_lr: float | None = Field(None, gt=0.0)
    grad_clip: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> OptimConfig:
        ms = self.milestones
        if any(m <= 0 for m in ms) or any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
            raise ValueError(f"optim.milestones {ms}: expected strictly increasing positive epochs")
        if ms and ms[-1] >= self.epochs:
            raise ValueError(f"optim.milestones {ms}: every milestone must be < optim.epochs "
                             f"({self.epochs})")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"optim.warmup_epochs {self.warmup_epochs} must be < optim.epochs "
                             f"({self.epochs})")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("optim.nesterov needs optimizer sgd with momentum > 0")
        if self.new_layers_warmup_epochs >= self.epochs:
            raise ValueError(f"optim.new_layers_warmup_epochs {self.new_layers_warmup_epochs} must "
                             f"be < optim.epochs ({self.epochs})")
        if self.new_layer_lr is not None and self.new_layers_warmup_epochs == 0:
            raise ValueError("optim.new_layer_lr is the lr of the new-layers warm-up: set "
                             "optim.new_layers_warmup_epochs > 0 as well")
        if self.min_lr >= self.lr:
            raise ValueError(f"optim.min_lr {self.min_lr} must be < optim.lr {self.lr}")
        return self


class EvalConfig(_Section):
    """Evaluation after training and validation during it.

    `splits`: the splits scored after training (default: train, test, test_shifted and every
    unknown set that is configured); `train` is run with the test pipeline (it fixes the
    threshold). `stochastic_passes`: T passes stored for softmax (MC dropout) and bnn heads.
    `every_n_epochs`: validation on `val` every n epochs (0: never).
    """

    splits: list[str] | None = None
    stochastic_passes: int = Field(10, ge=1)
    every_n_epochs: int = Field(1, ge=0)


class ResourcesConfig(_Section):
    """Ray Train workers. `num_workers: 0` runs the loop in the driver process (no cluster)."""

    num_workers: int = Field(1, ge=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(1.0, ge=0.0)
    amp: bool = True
    channels_last_3d: bool = True
    max_failures: int = Field(0, ge=-1)


class CheckpointConfig(_Section):
    """A checkpoint every `every_n_epochs` epochs (and at the last); Ray keeps `num_to_keep`."""

    every_n_epochs: int = Field(1, ge=1)
    num_to_keep: int | None = Field(2, ge=1)


class TrackingConfig(_Section):
    """MLflow: `uri` (default: env `MLFLOW_TRACKING_URI`, then `sqlite:///<run_dir>/mlflow.db`)."""

    uri: str | None = None
    experiment: str | None = None
    run_dir: str = "runs"

    @field_validator("run_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value:
            raise ValueError("expected a folder path, got an empty string")
        return str(Path(value).expanduser().absolute())


class DebugConfig(_Section):
    """Injected faults for tests: the worker dies once at the start of epoch `fail_at_epoch`."""

    fail_at_epoch: int | None = Field(None, ge=0)


class ExperimentConfig(_Section):
    """One experiment: data, model, optimiser, evaluation, resources, checkpoints, tracking."""

    name: str = "default"
    seed: int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    debug: DebugConfig = Field(default_factory=DebugConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("expected letters, digits and '_.=-' (it names folders and runs)")
        return value

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        available = self.data.split_lists()
        for split in self.eval.splits or []:
            if split not in available:
                raise ValueError(f"eval.splits: {split!r} has no list file; configured splits: "
                                 f"{sorted(available)}")
        if self.data.train_list is None:
            raise ValueError("data.train_list: a training list file is required")
        if self.model.head == "sdn" and self.data.scene_labels is None:
            raise ValueError("data.scene_labels: the sdn head needs scene pseudo-labels")
        if self.eval.every_n_epochs and self.data.val_list is None:
            raise ValueError(f"eval.every_n_epochs {self.eval.every_n_epochs} needs data.val_list "
                             "(or set eval.every_n_epochs: 0)")
        if self.debug.fail_at_epoch is not None and self.debug.fail_at_epoch >= self.optim.epochs:
            raise ValueError(f"debug.fail_at_epoch {self.debug.fail_at_epoch} must be < "
                             f"optim.epochs ({self.optim.epochs})")
        if self.debug.fail_at_epoch is not None and self.resources.num_workers == 0:
            raise ValueError("debug.fail_at_epoch needs resources.num_workers >= 1: with 0 the loop "
                             "runs in the driver process, which the fault would kill")
        return self

    # ----------------------------------------------------------------------------------------

    def eval_splits(self) -> list[str]:
        """The splits scored after training, in order (see `EvalConfig.splits`)."""
        if self.eval.splits is not None:
            return list(self.eval.splits)
        available = self.data.split_lists()
        return [s for s in ("train", "test", "test_shifted") if s in available] + \
            list(self.data.unknown)

    def experiment_name(self) -> str:
        """The MLflow experiment: `tracking.experiment`, else the config's name."""
        return self.tracking.experiment or self.name

    def run_root(self) -> Path:
        """`<run_dir>/<name>`: Ray storage (`ray/`), score stores (`stores/`), report."""
        return Path(self.tracking.run_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-safe dict that `load_config` turns back into an equal config."""
        return self.model_dump(mode="json")

    def override(self, overrides: Mapping[str, Any]) -> ExperimentConfig:
        """A validated copy with dotted-path overrides, e.g. `{"optim.lr": 1e-3}`.

        Raises:
            ConfigError: an unknown path or a bad value (naming the dotted path).
        """
        return load_config(self.to_dict(), overrides=overrides)


def _check_name(value: str, known: list[str], kind: str) -> str:
    if value not in known:
        raise ValueError(f"unknown {kind} {value!r}; registered {kind}s: {', '.join(known)}")
    return value


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted or any(not p for p in dotted.split(".")):
            raise ConfigError(f"override {dotted!r}: expected a dotted field path like 'optim.lr'")
        node = out
        parts = dotted.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: {'.'.join(parts[: i + 1])} is "
                                  f"{child!r}, not a section with fields")
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out


def _fields_at(loc: tuple) -> list[str] | None:
    """The field names of the section holding `loc`'s last key, or None if that is no section."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return list(model.model_fields)


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not str(p).startswith("function-"))
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(loc)
            msg = "unknown field" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        value = e.get("input")
        section = isinstance(value, dict) and _fields_at((*loc, "")) is not None
        # a section-level check already names its values in the message
        shown = "" if e["type"] == "missing" or section else f" (got {value!r})"
        if e["type"] == "value_error" and section:
            lines.append(msg)  # a cross-field check names its dotted fields itself
        else:
            lines.append(f"{dotted}: {msg}{shown}")
    return "; ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines)


def load_config(source: str | os.PathLike | Mapping[str, Any] | ExperimentConfig,
                overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate a config from a YAML file or a mapping, then apply dotted overrides.

    Args:
        source: a YAML file path, a nested mapping, or an `ExperimentConfig`.
        overrides: dotted path -> value, applied before validation.

    Raises:
        ConfigError: naming the file (when there is one), the dotted field, the value and what is
            allowed.
        FileNotFoundError: the file does not exist.
    """
    where = ""
    if isinstance(source, ExperimentConfig):
        raw: Any = source.to_dict()
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        where = f"{path}: "
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{where}not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}expected a mapping of config sections at the top level, "
                              f"got {type(raw).__name__}")
    try:
        if overrides:
            raw = _apply_overrides(raw, overrides)
        return ExperimentConfig.model_validate(raw)
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
    except ValidationError as err:
        raise ConfigError(f"{where}{_format_error(err)}") from None


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (sections in declaration order); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path
