"""Loading MMAction2 / DEAR model-zoo checkpoints, and dear_ray's own, into dear_ray modules.

Backbone keys follow MMAction2's naming (DEAR's mmaction/models/backbones/), so a checkpoint loads
after prefix mapping
only: `module.` (DataParallel) is stripped, and a leading `backbone.` is added or removed to match
the target (a full Recognizer has `backbone.*`/`cls_head.*` keys, a bare backbone has neither).
The released DEAR checkpoints keep a few modules elsewhere; `DEAR_KEY_MAP` renames them:
the CED head (a recognizer-level `debias_head`), TPN's auxiliary head (inside the neck), the BNN
classifier (`bnn_cls.bnn_layer`), and RPL's reciprocal points (the weight of a bias-free Linear,
`fc_centers`, shape (K, F) with DEAR's one centre a class) and radius (a parameter of the loss
module, `loss_cls.radius`, shape (1,); ours is a scalar, so a one-element tensor is reshaped).
SDN's checkpoints (vt-vl-lab/SDN models/resnet.py: the whole 3D-ResNet is one module, saved by
libs/train_epoch.py as {'state_dict': DataParallel(model).state_dict(), ...}) keep the action
classifier as `fc.*` and the scene-adversarial MLP as `place_mlp.<i>.fc/bn.*` and
`place_mlp.p_last_fc.*`; `SDN_KEY_MAP` puts them under `cls_head.`. SDN's human-mask adversarial
head `hm_mlp.*` (its `--is_mask_adv` GRL head) has no counterpart here (docs/methods.md#sdn: the
mask-confusion
loss acts on fc_cls), so those keys are listed as `ignored`, not silently dropped. DEAR's TPN BNN and
RPL heads (mmaction/models/heads/tpn_bnn_head.py, tpn_rpl_head.py) derive from MMAction2's
`TSNHead`, whose constructor builds a plain `fc_cls` that their forward never reads: when a
checkpoint holds a BNN layer (`cls_head.bnn_cls.*`) or RPL centres (`cls_head.fc_centers.*`) and the
model has no plain `cls_head.fc_cls`, its `cls_head.fc_cls.weight` / `.bias` are `ignored` too.

SlowFast: the classifier reads the pooled pathways FAST-first (MMAction2's SlowFastHead, DEAR's
SlowFast heads; dear_ray's SlowFast backbone returns its maps in that order), so the columns of a
zoo checkpoint's `fc_cls.weight` / `fc_centers.weight` / `bnn_layer.weight_*` load unchanged.

A dear_ray training checkpoint (a Ray Train `checkpoint_epoch_*` folder, or its `state.pt`) loads
the same way, so `model.pretrained` can name one directly (SDN's fine-tuning step); `export_weights`
writes its weights as a plain `.pth` under the MMAction2 / DEAR key names (`DEAR_KEY_MAP` and the
TPN neck reversed; `sdn`: SDN's names), which those codebases' heads read to the same logits.

Evaluating a checkpoint (`eval_only`, `dear-ray test`) needs an exact fit: `check_checkpoint(model,
path, complete=True)` matches the keys without loading (the driver builds the model on the meta
device, before any Ray Train worker starts) and fails naming the missing and unexpected keys;
`load_checkpoint(..., complete=True)` is the same check, then the load.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from dear_ray.models.backbones.weights import rename_foreign_keys

# A tensor whose key contains one of these is a classifier: its width depends on the class count,
# so a mismatch (Kinetics-400 fc_cls into a 101-class head) is skipped instead of failing.
CLASSIFIER_KEY_PARTS = ("fc_cls", "aux_head.fc", "cls_head.points", "debias_head.f1_fc",
                        "debias_head.f2_fc", "debias_head.f3_fc")
# released DEAR key prefix -> dear_ray's (Cogito2012/DEAR: recognizers/base.py `debias_head`,
# necks/tpn.py `aux_head`, heads/*_bnn_head.py `bnn_cls` -> heads/bnn.py `bnn_layer`,
# heads/*_rpl_head.py `fc_centers`, losses/rpl_loss.py `radius`; heads/rpl_dist.py `Dist` is unused)
DEAR_KEY_MAP = (
    ("debias_head.", "cls_head.debias_head."),
    ("neck.aux_head.", "aux_head."),
    ("cls_head.bnn_cls.bnn_layer.", "cls_head.fc_cls."),
    ("cls_head.fc_centers.weight", "cls_head.points"),
    ("cls_head.loss_cls.radius", "cls_head.radius"),
)
# SDN's key prefix -> dear_ray's (vt-vl-lab/SDN models/resnet.py `fc`, `place_mlp`); only applied
# to keys that start with it (a top-level `fc.` is SDN's or torchvision's classifier)
SDN_KEY_MAP = (
    ("fc.", "cls_head.fc_cls."),
    ("place_mlp.", "cls_head.place_mlp."),
)
# checkpoint key prefixes with no place in dear_ray by design: reported as `ignored`
IGNORED_KEY_PREFIXES = {
    "hm_mlp.": "SDN's human-mask adversarial head (--is_mask_adv); dear_ray's mask-confusion loss "
               "acts on fc_cls (docs/methods.md#sdn)",
}
# TSNHead's classifier in DEAR's TPN BNN / RPL checkpoints: ignored when the checkpoint has the
# layer those heads use instead (and the model has no plain fc_cls), see the module docstring
UNUSED_TSN_CLASSIFIER = ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias")
_TSN_CLASSIFIER_USED_INSTEAD = ("cls_head.bnn_cls.", "cls_head.fc_centers.")
_IGNORED_WHY = {**IGNORED_KEY_PREFIXES,
                "cls_head.fc_cls.": "TSNHead's fc_cls, built but never read by DEAR's TPN BNN / RPL "
                                    "heads"}
EXPORT_LAYOUTS = ("mmaction2", "sdn", "dear_ray")
TRAIN_STATE_FILE = "state.pt"  # dear_ray.train.checkpointing.STATE_FILE (not imported: no cycle)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the offending keys."""


@dataclass(frozen=True)
class LoadReport:
    """What `load_checkpoint` did.

    Attributes:
        path: the checkpoint file.
        loaded: model keys that received a tensor.
        missing: model keys the checkpoint did not provide (they keep their initial values).
        unexpected: checkpoint keys (after stripping `module.`) with no place in the model.
        skipped_classifier: model classifier keys whose checkpoint tensor had another shape.
        ignored: checkpoint keys of modules dear_ray leaves out by design (`IGNORED_KEY_PREFIXES`,
            SDN's `hm_mlp.*`; `UNUSED_TSN_CLASSIFIER` of DEAR's TPN BNN / RPL heads).
        shapes: model key -> (checkpoint shape, model shape) of every skipped or mismatched tensor.
        mismatched: `checkpoint key -> model key: checkpoint (..), model (..)` of the tensors whose
            shape differs and that are not skipped (`load_checkpoint` refuses those).
    """

    path: Path
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)

    def classifier_difference(self) -> str:
        """Why the classifier was skipped, from its weight's shapes: another number of classes
        (rows), or another feature width (columns: the checkpoint's backbone is another one)."""
        weights = [k for k in self.skipped_classifier if k.endswith("weight")] or self.skipped_classifier
        if not weights or weights[0] not in self.shapes:
            return "another shape"
        ckpt, own = self.shapes[weights[0]]
        reasons = []
        if len(ckpt) == len(own) and ckpt[:1] != own[:1]:
            reasons.append(f"{ckpt[0]} classes in the checkpoint, {own[0]} in the model")
        if len(ckpt) == len(own) and ckpt[1:] != own[1:]:
            reasons.append(f"features {ckpt[1:]} in the checkpoint, {own[1:]} in the model: "
                           "another backbone width")
        return "; ".join(reasons) or f"checkpoint {ckpt}, model {own}"

    def summary(self, max_keys: int = 10) -> str:
        """A readable multi-line account, listing at most `max_keys` keys per category."""

        def keys(names: list[str]) -> str:
            more = f", ... ({len(names) - max_keys} more)" if len(names) > max_keys else ""
            return ", ".join(names[:max_keys]) + more

        total = len(self.loaded) + len(self.missing) + len(self.skipped_classifier)
        lines = [f"{self.path}: loaded {len(self.loaded)}/{total} tensors of the model"]
        if self.skipped_classifier:
            lines.append(f"  skipped classifier ({self.classifier_difference()}): "
                         f"{keys(self.skipped_classifier)}")
        if self.missing:
            lines.append(f"  missing in checkpoint ({len(self.missing)}): {keys(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected in checkpoint ({len(self.unexpected)}): {keys(self.unexpected)}")
        for prefix, why in _IGNORED_WHY.items():
            hits = [k for k in self.ignored if k.startswith(prefix)]
            if hits:
                lines.append(f"  ignored ({len(hits)}, {why}): {keys(hits)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _checkpoint_file(path: Path) -> Path:
    """`path`, or the `state.pt` inside a dear_ray checkpoint folder."""
    if path.is_dir():
        if not (path / TRAIN_STATE_FILE).is_file():
            raise FileNotFoundError(f"checkpoint folder {path} has no {TRAIN_STATE_FILE} "
                                    "(expected a dear_ray checkpoint_epoch_* folder)")
        return path / TRAIN_STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return path


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    path = _checkpoint_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True): not a torch checkpoint, or it "
            f"pickles objects other than tensors and plain containers. Re-save only its state dict "
            f"from a trusted environment: "
            f"torch.save(torch.load(p, weights_only=False)['state_dict'], new_path). Cause: {e}"
        ) from e
    except (RuntimeError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({e})") from e
    if isinstance(obj, Mapping) and "format_version" in obj and "model" in obj:
        obj = obj["model"]  # a dear_ray training checkpoint: its model's state dict
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(
            f"{path}: expected a state dict (a mapping of names to tensors, or a dict with a "
            f"'state_dict' entry), got {type(state).__name__}"
        )
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entries that are not tensors: {bad[:10]}")
    # MMAction2's Video Swin and torchvision's classifier names (dear_ray.models.backbones.weights)
    return rename_foreign_keys({_strip_module(k): v for k, v in state.items()})


def _strip_module(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def _target_key(key: str, model_keys: set[str]) -> str | None:
    """The model key a checkpoint key maps to: itself (or its `DEAR_KEY_MAP` rename), with
    `backbone.` added, or with it removed."""
    for old, new in DEAR_KEY_MAP + SDN_KEY_MAP:
        if key.startswith(old) and key not in model_keys:
            key = new + key[len(old):]
            break
    candidates = [key, f"backbone.{key}"]
    if key.startswith("backbone."):
        candidates.append(key[len("backbone."):])
    return next((c for c in candidates if c in model_keys), None)


def _is_classifier(key: str) -> bool:
    return any(part in key for part in CLASSIFIER_KEY_PARTS)


def _unused_by_design(state: Mapping[str, Tensor], model_keys: set[str]) -> set[str]:
    """Checkpoint keys of modules the released model built but never used (`UNUSED_TSN_CLASSIFIER`
    beside a BNN layer or RPL centres, for a model without a plain fc_cls)."""
    if any(k in model_keys for k in UNUSED_TSN_CLASSIFIER):
        return set()
    if not any(k.startswith(_TSN_CLASSIFIER_USED_INSTEAD) for k in state):
        return set()
    return {k for k in UNUSED_TSN_CLASSIFIER if k in state}


def _match(state: Mapping[str, Tensor], own: Mapping[str, Tensor], path: Path, *,
           strict_classifier: bool) -> tuple[dict[str, Tensor], LoadReport]:
    """Map checkpoint keys onto the model's (`own`: its state dict, possibly on the meta device).

    Returns the tensors to load (by model key) and the report; a shape mismatch (a classifier's
    only with `strict_classifier`) is listed in `report.mismatched` (`_refuse_mismatched`)."""
    model_keys = set(own)
    unused = _unused_by_design(state, model_keys)
    to_load: dict[str, Tensor] = {}
    unexpected, skipped, mismatched, ignored = [], [], [], []
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for key, value in state.items():
        if key.startswith(tuple(IGNORED_KEY_PREFIXES)) or key in unused:
            ignored.append(key)
            continue
        target = _target_key(key, model_keys)
        if target is None or target in to_load:
            unexpected.append(key)
            continue
        if value.shape != own[target].shape and own[target].dim() == 0 and value.numel() == 1:
            value = value.reshape(())  # a scalar saved as (1,) (DEAR's RPL radius)
        if value.shape != own[target].shape:
            shapes[target] = (tuple(value.shape), tuple(own[target].shape))
            if _is_classifier(target) and not strict_classifier:
                skipped.append(target)
            else:
                mismatched.append(
                    f"{key} -> {target}: checkpoint {tuple(value.shape)}, model {tuple(own[target].shape)}"
                )
            continue
        to_load[target] = value
    missing = [k for k in own if k not in to_load and k not in skipped and k not in shapes]
    return to_load, LoadReport(path=path, loaded=list(to_load), missing=missing,
                               unexpected=unexpected, skipped_classifier=skipped, ignored=ignored,
                               shapes=shapes, mismatched=mismatched)


def _refuse_mismatched(report: LoadReport, *, complete: bool, what: str) -> None:
    """Raise naming every tensor of another shape; with `complete` (an evaluation) the missing
    and unexpected keys too, so one message shows all that does not fit."""
    if not report.mismatched:
        return
    lines = [f"{report.path}: shape mismatch for {len(report.mismatched)} tensor(s):",
             *(f"  {m}" for m in report.mismatched)]
    if complete:
        lines += _unfit_lines(report, what)[1:]
    raise CheckpointError("\n".join(lines))


def _require_complete(report: LoadReport, what: str) -> None:
    """Raise when the checkpoint does not provide every tensor of the model (BatchNorm's
    `num_batches_tracked` counters aside: they do not change a prediction) or has tensors with
    no place in it (the `ignored` keys aside)."""
    missing = [k for k in report.missing if not k.endswith("num_batches_tracked")]
    if not missing and not report.unexpected:
        return
    raise CheckpointError("\n".join(_unfit_lines(report, what)))


def list_keys(names: list[str], n: int = 20) -> str:
    """At most `n` key names, and how many more there are."""
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def _unfit_lines(report: LoadReport, what: str) -> list[str]:
    missing = [k for k in report.missing if not k.endswith("num_batches_tracked")]
    lines = [f"{report.path}: does not fit {what}: evaluating it needs every tensor of the model"]
    if missing:
        lines.append(f"  missing in checkpoint ({len(missing)}): {list_keys(missing)}")
    if report.unexpected:
        lines.append(f"  unexpected in checkpoint ({len(report.unexpected)}): "
                     f"{list_keys(report.unexpected)}")
    lines.append("  (another head or backbone than model.head / model.backbone, other "
                 "head_options, or a checkpoint of a different model)")
    return lines


def check_checkpoint(model: nn.Module, path: str | Path, *, complete: bool = False,
                     what: str = "the model") -> LoadReport:
    """What `load_checkpoint` would do, without loading: `model` may live on the meta device
    (the driver checks a checkpoint this way before any Ray Train worker starts).

    Args:
        complete: the checkpoint must fit exactly (an evaluation, `eval_only`): every model tensor
            provided (`num_batches_tracked` aside), no unexpected key, classifier shapes equal.
        what: how the message names the model (e.g. `model i3d_r50 + dear (101 classes)`).

    Raises:
        FileNotFoundError, CheckpointError: as `load_checkpoint`; with `complete`, also a
            checkpoint that leaves tensors out or has extra ones, naming up to 20 of each.
    """
    path = Path(path)
    _, report = _match(_read_state_dict(path), model.state_dict(), path,
                       strict_classifier=complete)
    _refuse_mismatched(report, complete=complete, what=what)
    if complete:
        _require_complete(report, what)
    return report


def load_checkpoint(model: nn.Module, path: str | Path, *, strict_classifier: bool = False,
                    complete: bool = False) -> LoadReport:
    """Loads an MMAction2 / DEAR / SDN `.pth` into `model` (a Recognizer or a bare backbone), in place.

    Args:
        model: the target; its keys are matched as described in the module docstring.
        path: the checkpoint, read with `torch.load(weights_only=True)`: a bare state dict, a dict
            whose `state_dict` entry is one, or a dear_ray training checkpoint (its folder or
            `state.pt`; the model weights are taken).
        strict_classifier: fail instead of skipping when a classifier tensor (key containing one of
            `CLASSIFIER_KEY_PARTS`) has another shape.
        complete: fail unless the checkpoint fits exactly (`check_checkpoint`); implies
            `strict_classifier`. Nothing is loaded when it fails.

    Returns:
        The `LoadReport` (`str(report)` is a readable summary).

    Raises:
        FileNotFoundError: `path` does not exist.
        CheckpointError: unreadable file, not a state dict, or a shape mismatch on a
            non-classifier tensor (all mismatches are listed with both shapes); with `complete`,
            missing or unexpected tensors.
    """
    path = Path(path)
    to_load, report = _match(_read_state_dict(path), model.state_dict(), path,
                             strict_classifier=strict_classifier or complete)
    _refuse_mismatched(report, complete=complete, what="the model")
    if complete:
        _require_complete(report, "the model")
    model.load_state_dict(to_load, strict=False)
    return report


def to_mmaction2_layout(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a dear_ray Recognizer state dict to the MMAction2 / DEAR module names.

    `DEAR_KEY_MAP` reversed (`cls_head.debias_head.` -> `debias_head.`, `aux_head.` ->
    `neck.aux_head.`, the BNN layer -> `cls_head.bnn_cls.bnn_layer.`, RPL points ->
    `cls_head.fc_centers.weight`, the radius -> `cls_head.loss_cls.radius` of shape (1,)) and TPN's
    `backbone.neck.` -> `neck.` (MMAction2's recognizer holds the neck). Everything else (backbone
    keys, `cls_head.fc_cls.*`, SlowFast's fast-first fc columns) is already MMAction2's.
    `load_checkpoint` reads the result back.
    """
    renames = [(ours, theirs) for theirs, ours in DEAR_KEY_MAP] + [("backbone.neck.", "neck.")]
    is_bnn = any(k.startswith("cls_head.fc_cls.weight_mu") for k in state)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for ours, theirs in renames:
            if ours == "cls_head.fc_cls." and not is_bnn:
                continue  # a plain fc_cls keeps its name; only the Bayesian layer moves
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        if key == "cls_head.loss_cls.radius" and value.dim() == 0:
            value = value.reshape(1)  # DEAR's RPLoss radius is torch.Tensor(1)
        out[key] = value
    return out


def to_sdn_layout(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a dear_ray Recognizer state dict to SDN's (vt-vl-lab/SDN models/resnet.py, saved by
    libs/train_epoch.py as `DataParallel(model).state_dict()`): the backbone's keys at the top
    level, `cls_head.fc_cls.` -> `fc.`, `cls_head.place_mlp.` -> `place_mlp.`, everything under
    `module.`. `load_checkpoint` reads the result back (`SDN_KEY_MAP`)."""
    renames = [("backbone.", "")] + [(ours, theirs) for theirs, ours in SDN_KEY_MAP]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for ours, theirs in renames:
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        out[f"module.{key}"] = value
    return out


def export_weights(checkpoint: str | Path, out: str | Path, *, layout: str = "mmaction2") -> Path:
    """Write a dear_ray training checkpoint's model weights as `{"state_dict": ...}` to `out`.

    With `layout="mmaction2"` (default) the keys are MMAction2 / DEAR's (`to_mmaction2_layout`), so
    their recognizers load it and their heads give the same logits (SlowFast's fc columns are
    fast-first in both); `sdn` writes SDN's names (`to_sdn_layout`, for r3d18 models);
    `dear_ray` keeps dear_ray's names. Either is what `model.pretrained` reads
    like any model-zoo file (a different class count skips the classifier). The optimizer,
    scheduler and RNG states stay behind.

    Args:
        checkpoint: a `checkpoint_epoch_*` folder written by `dear_ray.train` (or its `state.pt`).
        out: the `.pth` file to write (folders are created).
        layout: `mmaction2`, `sdn` or `dear_ray`.

    Raises:
        FileNotFoundError: no checkpoint at `checkpoint`.
        CheckpointError: it is not a dear_ray training checkpoint.
        ValueError: an unknown layout.
    """
    if layout not in EXPORT_LAYOUTS:
        raise ValueError(f"export_weights: layout must be one of {EXPORT_LAYOUTS}, got {layout!r}")
    path = _checkpoint_file(Path(checkpoint))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({e})") from e
    if not (isinstance(obj, Mapping) and "format_version" in obj and "model" in obj):
        raise CheckpointError(f"{path}: not a dear_ray training checkpoint (expected the keys "
                              "'format_version' and 'model' written by dear_ray.train)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"epoch": int(obj.get("epoch", -1)), "source": str(path), "layout": layout}
    state = dict(obj["model"])
    if layout == "mmaction2":
        state = to_mmaction2_layout(state)
    elif layout == "sdn":
        state = to_sdn_layout(state)
    torch.save({"state_dict": state, "meta": meta}, out)
    return out
