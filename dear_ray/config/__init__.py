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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from dear_ray.config._base import NAME as _NAME
from dear_ray.config._base import Section as _Section
from dear_ray.config.cache import check_feature_cache
from dear_ray.config.data import SPARSE_DUMP, DataConfig, MultiScaleCropConfig, TestViews
from dear_ray.config.run import CheckpointConfig, DebugConfig, ResourcesConfig, TrackingConfig
from dear_ray.methods import STOCHASTIC_HEADS
from dear_ray.splits import KNOWN_SPLITS

# PSL's MiT-v2 known block (`dear_ray.metrics.protocols.PSL_MIT_KNOWN_ROWS`; not imported here so
# that the config stays free of the metrics' dependencies)
PSL_MIT_KNOWN_ROWS = 3783



class ConfigError(ValueError):
    """An invalid experiment config; the message names the dotted field, the value and what is allowed."""


class ModelConfig(_Section):
    """A recognizer: registered backbone and head names, and their builders' options.

    `pretrained`: an MMAction2 / DEAR model-zoo `.pth`, or a dear_ray checkpoint folder (e.g. the
    last `checkpoint_epoch_*` of an earlier trial), made absolute and loaded before training; a
    classifier of another width is skipped. Its backbone must load whole (every backbone tensor
    provided, no backbone tensor without a place) unless `allow_partial_pretrained` says that
    loading only part of it is intended. torchvision's weight files and MMAction2's Video Swin
    checkpoints load into the torchvision backbones (docs/backbones.md); VideoMAE / V-JEPA 2
    read a local HuggingFace folder through `backbone_options.hf_dir` instead.

    `freeze_backbone`: train the head only (a linear probe with `softmax`): the backbone's
    parameters are not optimised and it stays in eval mode. `pooling`: `avg` (global average pool)
    or `attentive` (V-JEPA 2's attentive pooler between the maps and any head; its options
    `depth`, `num_heads`, `mlp_ratio` in `pooling_options`); with both, V-JEPA 2's
    frozen-backbone attentive probe.

    `feature_cache` (`off` / `on`; YAML's bare on / off read as booleans are accepted): with a
    frozen backbone, read the backbone's outputs from an on-disk cache keyed by everything they
    depend on, extracted by the first trial that needs them (docs/backbones.md); its folder is
    `feature_cache_dir` (default `<tracking.run_dir>/feature_cache`); the training views are the
    training pipeline's draws of each epoch with seed `feature_cache_seed` (default: `seed`).
    """

    backbone: str = "i3d_tiny"
    head: str = "softmax"
    backbone_options: dict[str, Any] = Field(default_factory=dict)
    head_options: dict[str, Any] = Field(default_factory=dict)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    pretrained: str | None = None
    freeze_backbone: bool = False
    pooling: Literal["avg", "attentive"] = "avg"
    pooling_options: dict[str, Any] = Field(default_factory=dict)
    allow_partial_pretrained: bool = False
    feature_cache: Literal["off", "on"] = "off"
    feature_cache_dir: str | None = None
    feature_cache_seed: int | None = Field(None, ge=0)

    @field_validator("feature_cache", mode="before")
    @classmethod
    def _cache_switch(cls, value: Any) -> Any:
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("pretrained", "feature_cache_dir")
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

    @model_validator(mode="after")
    def _check_pooling(self) -> ModelConfig:
        allowed = ("depth", "num_heads", "mlp_ratio")
        unknown = sorted(set(self.pooling_options) - set(allowed))
        if unknown:
            raise ValueError(f"model.pooling_options: unknown option(s) {unknown}; the attentive "
                             f"pooler takes {', '.join(allowed)}")
        if self.pooling_options and self.pooling != "attentive":
            raise ValueError(f"model.pooling_options {self.pooling_options} need model.pooling: "
                             "attentive")
        return self

    def recognizer_options(self) -> dict[str, Any]:
        """The keyword arguments of `dear_ray.models.build_recognizer` but `num_classes`."""
        return dict(backbone=self.backbone, head=self.head, backbone_options=self.backbone_options,
                    head_options=self.head_options, dropout=self.dropout, pooling=self.pooling,
                    pooling_options=self.pooling_options, freeze_backbone=self.freeze_backbone)


class OptimConfig(_Section):
    """Optimiser and learning-rate schedule (docs/fidelity.md rows 11-14).

    The schedule is evaluated per iteration (`step_per: iteration`, fractional epochs) or once per
    epoch; `warmup_epochs` ramps the lr linearly from `warmup_start * lr` to the schedule's value.
    `warmup_per` (default: as `step_per`) says whether the warm-up moves every iteration or once per
    epoch: mmcv 1.x's `LrUpdaterHook` with `by_epoch=True, warmup='linear', warmup_by_epoch=True`
    (DEAR's SlowFast `CosineAnnealing`) is `step_per: epoch, warmup_per: iteration`, with
    `warmup_start` = mmcv's `warmup_ratio` (default 0.1).
    SDN's warm-up: for the first `new_layers_warmup_epochs` epochs only the parameters that
    `model.pretrained` did not provide (the scene MLP, a replaced classifier; every parameter when
    nothing is pretrained) train, at `new_layer_lr` (default `lr`); then all train on the schedule.
    SDN's train.py runs the warm-up while its 1-based epoch i satisfies `i < warm_up_epochs`, so
    SDN's `--warm_up_epochs 5` is `new_layers_warmup_epochs: 4` here.

    `dampening`: torch SGD's dampening; SDN's train.py passes its `--dampening` (default 0.9) unless
    `--nesterov` (then 0). Must be 0 with `nesterov` (as torch requires).
    `param_groups`: `default` (the classifier at `lr * classifier_lr_mult`, everything else at `lr`
    and `weight_decay`); `tsm_fc_lr5` (released: MMAction2 0.x / DEAR
    mmaction/core/optimizer/tsm_optimizer_constructor.py with `fc_lr5=True`, the TSM DNN and DEAR
    configs): in module order, the first conv's weight at (lr, wd), every bias of a conv or Linear
    at (2 lr, 0), other conv and Linear weights at (lr, wd), BatchNorm/GroupNorm parameters at
    (lr, 0), and the LAST conv/Linear weight and bias in module order at (5 lr, wd) and
    (10 lr, 0): in DEAR's model that is the debias head's f3 fc, not fc_cls (a quirk);
    `tsm_fc_lr5_classifier` (corrected): the same, with the 5x / 10x on `cls_head.fc_cls`.
    DEAR's TSM BNN and RPL configs use plain SGD (`default`, multiplier 1).
    `sdn_mask_step`: SDN's human-mask confusion loss as a `separate` second SGD step on an
    independent masked batch (released, SDN libs/train_epoch.py) or `joint`ly added to the same
    step on the masked copy of the same clip (dear_ray's earlier behaviour).
    """

    optimizer: Literal["sgd", "adamw"] = "sgd"
    epochs: int = 10
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
    warmup_per: Literal["iteration", "epoch"] | None = None
    classifier_lr_mult: float = Field(1.0, gt=0.0)
    dampening: float = Field(0.0, ge=0.0, lt=1.0)
    param_groups: Literal["default", "tsm_fc_lr5", "tsm_fc_lr5_classifier"] = "default"
    sdn_mask_step: Literal["separate", "joint"] = "separate"
    new_layers_warmup_epochs: int = Field(0, ge=0)
    new_layer_lr: float | None = Field(None, gt=0.0)
    grad_clip: float | None = Field(None, gt=0.0)

    @field_validator("epochs")
    @classmethod
    def _some_epochs(cls, value: int) -> int:
        if value < 1:
            raise ValueError("expected >= 1 training epochs; to evaluate a checkpoint without "
                             "training set eval_only: true and model.pretrained (dear-ray test)")
        return value

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
        if self.dampening > 0 and (self.optimizer != "sgd" or self.nesterov):
            raise ValueError(f"optim.dampening {self.dampening} needs optimizer sgd without "
                             "nesterov (torch's Nesterov SGD requires dampening 0; SDN passes 0 "
                             "then)")
        if self.param_groups != "default" and self.classifier_lr_mult != 1.0:
            raise ValueError(f"optim.param_groups {self.param_groups!r} sets the classifier's "
                             f"multipliers itself: leave optim.classifier_lr_mult at 1 (got "
                             f"{self.classifier_lr_mult})")
        if self.warmup_per is not None and self.warmup_epochs == 0:
            raise ValueError(f"optim.warmup_per {self.warmup_per!r} needs optim.warmup_epochs > 0")
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

    `splits`: the splits scored after training (default: train, test, test_shifted, the
    static-bias splits test_scuba and test_scufo when `data.static_bias` has them, val and
    val_unknown when `data.val_unknown` is set, and every unknown set that is configured);
    `train` is run with the test pipeline (it fixes the threshold). `stochastic_passes`: T passes stored for softmax (MC dropout) and bnn heads.
    `every_n_epochs`: validation on `val` every n epochs (0: never).
    `average_clips`: how the test views (clips x crops) of a video are combined: `score` = mean
    of the logits, `prob` = mean of the per-view softmax, `released` = what DEAR's scripts do per
    head and split (MMAction2 0.x `test_cfg.average_clips` in DEAR's configs: the EDL family
    averages logits; softmax uses `prob` for the `train` split (the threshold script) and the
    mean logits on the test splits; bnn and rpl `prob`; sdn, and softmax on SDN's `r3d18_a`, as
    SDN's test code: `prob` everywhere), resolved by
    `dear_ray.train.evaluation.average_clips_for(head, split, setting, backbone=...)`.
    `precision`: the score stores are computed in fp32 (no autocast, DEAR's fp32 tests) unless
    `amp` (the training autocast, bf16 / fp16), whatever `resources.amp` says for training.
    """

    splits: list[str] | None = None
    stochastic_passes: int = Field(10, ge=1)
    every_n_epochs: int = Field(1, ge=0)
    average_clips: Literal["released", "score", "prob"] = "released"
    precision: Literal["fp32", "amp"] = "fp32"
    # the open-set protocol of the report (dear_ray.metrics.protocols): `dear` (per unknown set,
    # thresholded open maF1 over the openness curve, binarised AUC, and the threshold-free
    # metrics) or `psl` (HMDB-51 without the classes that overlap UCF-101, MiT-v2 over PSL's 10
    # slices, threshold-free metrics only); `dear-ray report SWEEP --protocol` re-reports finished
    # stores under the other one, beside the first
    protocol: Literal["dear", "psl"] = "dear"
    # unknown classes the report also leaves out (a list of names, or a file: one name a line, or
    # the saved output of `dear-ray data overlap`): every unknown set holding one gets a second set
    # of rows `<set>-minus-<tag>` (dear_ray.metrics.exclusion, docs/overlap.md)
    exclude_classes: list[str] | str | None = None
    # the report's released-code choices (docs/fidelity.md, docs/importing.md): `threshold_print`
    # `released` rounds a get_threshold.py threshold to the 6 decimals its `%lf` prints, `exact`
    # keeps it; `subset_draws` `shared` gives every method the same seeded unknown-class subsets,
    # `dear_stream` replays compare_openness.py's one numpy stream across the methods;
    # `mit_known_rows` is the known block of PSL's MiT-v2 slices (3783 rows: UCF-101's test list,
    # `dear_ray.metrics.protocols.PSL_MIT_KNOWN_ROWS`), null for the known store's own size
    threshold_print: Literal["released", "exact"] = "released"
    subset_draws: Literal["shared", "dear_stream"] = "shared"
    mit_known_rows: int | None = Field(PSL_MIT_KNOWN_ROWS, ge=1)

    def report_options(self) -> dict[str, Any]:
        """The keyword arguments of `dear_ray.metrics.evaluate.evaluate_stores` these fields set
        (the protocol apart: the callers choose it)."""
        return {"threshold_print": self.threshold_print, "subset_draws": self.subset_draws,
                "mit_known_rows": self.mit_known_rows}


class ExperimentConfig(_Section):
    """One experiment: data, model, optimiser, evaluation, resources, checkpoints, tracking.

    `eval_only`: no training; the Ray Train workers load `model.pretrained` (required: ours, an
    MMAction2, released DEAR or SDN checkpoint, which must provide every tensor of the model) and
    run the evaluation of `eval.splits` (docs/metrics.md) as a trained trial's last epoch does.
    `dear-ray test CONFIG --checkpoint PATH` sets both; in a sweep, a case sets them (the released
    model zoo, jobs/sweeps/dear_ucf101_zoo.yaml). The `optim` section is then unused (`epochs`
    keeps its meaning: the store meta names `epoch_<epochs - 1>` of a trained trial only).
    """

    name: str = "default"
    seed: int = Field(0, ge=0)
    eval_only: bool = False
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
        if self.eval_only and self.model.pretrained is None:
            raise ValueError("eval_only: true evaluates model.pretrained without training: set "
                             "model.pretrained to the checkpoint (dear-ray test ... --checkpoint "
                             "PATH does)")
        if self.eval_only and self.debug.fail_at_epoch is not None:
            raise ValueError("debug.fail_at_epoch injects a fault into a training epoch: an "
                             "eval_only run has none (unset it)")
        if self.eval.every_n_epochs and self.data.val_list is None and not self.eval_only:
            raise ValueError(f"eval.every_n_epochs {self.eval.every_n_epochs} needs data.val_list "
                             "(or set eval.every_n_epochs: 0)")
        if self.debug.fail_at_epoch is not None and self.debug.fail_at_epoch >= self.optim.epochs:
            raise ValueError(f"debug.fail_at_epoch {self.debug.fail_at_epoch} must be < "
                             f"optim.epochs ({self.optim.epochs})")
        if self.resources.max_failures != 0 and self.resources.num_workers == 0:
            raise ValueError(f"resources.max_failures {self.resources.max_failures} restarts a "
                             "Ray Train worker group, and resources.num_workers 0 has none: set "
                             "it to 0 (a sweep's max_failures retries a trial from its last "
                             "checkpoint)")
        check_feature_cache(self)
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
        tuning = ["val", "val_unknown"] if "val_unknown" in available else []  # detector settings
        return [s for s in ("train", "test", "test_shifted", "test_scuba", "test_scufo", *tuning)
                if s in available] + list(self.data.unknown)

    def experiment_name(self) -> str:
        """The MLflow experiment: `tracking.experiment`, else the config's name."""
        return self.tracking.experiment or self.name

    def run_root(self) -> Path:
        """`<run_dir>/<name>`: Ray storage (`ray/`), score stores (`stores/`), report."""
        return Path(self.tracking.run_dir) / self.name

    def to_dict(self, *, sparse: bool = False) -> dict[str, Any]:
        """A plain, YAML/JSON-safe dict that `load_config` turns back into an equal config: every
        field, or with `sparse` without the input-pipeline fields that `data.preset` fills and
        the config did not set itself (the base that overrides build on: a `data.preset` among
        them fills those fields)."""
        if sparse:
            return self.model_dump(mode="json", context={SPARSE_DUMP: True})
        return self.model_dump(mode="json")

    def override(self, overrides: Mapping[str, Any]) -> ExperimentConfig:
        """A validated copy with dotted-path overrides, e.g. `{"optim.lr": 1e-3}`.

        Raises:
            ConfigError: an unknown path or a bad value (naming the dotted path).
        """
        return load_config(self.to_dict(sparse=True), overrides=overrides)


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
        raw: Any = source.to_dict(sparse=True)
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


__all__ = [
    "KNOWN_SPLITS", "STOCHASTIC_HEADS", "CheckpointConfig", "ConfigError", "DataConfig", "DebugConfig",
    "EvalConfig", "ExperimentConfig", "ModelConfig", "MultiScaleCropConfig", "OptimConfig",
    "ResourcesConfig", "TestViews", "TrackingConfig", "load_config", "save_config",
]
