"""Loading MMAction2 / DEAR model-zoo checkpoints, and dear_ray's own, into dear_ray modules.

Backbone keys follow MMAction2's naming (SPEC section 3), so a checkpoint loads after prefix mapping
only: `module.` (DataParallel) is stripped, and a leading `backbone.` is added or removed to match
the target (a full Recognizer has `backbone.*`/`cls_head.*` keys, a bare backbone has neither).
The released DEAR checkpoints keep a few modules elsewhere; `DEAR_KEY_MAP` renames them:
the CED head (a recognizer-level `debias_head`), TPN's auxiliary head (inside the neck), the BNN
classifier (`bnn_cls.bnn_layer`), and RPL's reciprocal points (the weight of a bias-free Linear,
`fc_centers`, shape (K, F) with DEAR's one centre a class) and radius (a parameter of the loss
module, `loss_cls.radius`, shape (1,); ours is a scalar, so a one-element tensor is reshaped).

A dear_ray training checkpoint (a Ray Train `checkpoint_epoch_*` folder, or its `state.pt`) loads
the same way, so `model.pretrained` can name one directly (SDN's fine-tuning step); `export_weights`
writes its weights as a plain MMAction2-style `.pth` for use elsewhere.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

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
    """

    path: Path
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)

    def summary(self, max_keys: int = 10) -> str:
        """A readable multi-line account, listing at most `max_keys` keys per category."""

        def keys(names: list[str]) -> str:
            more = f", ... ({len(names) - max_keys} more)" if len(names) > max_keys else ""
            return ", ".join(names[:max_keys]) + more

        total = len(self.loaded) + len(self.missing) + len(self.skipped_classifier)
        lines = [f"{self.path}: loaded {len(self.loaded)}/{total} tensors of the model"]
        if self.skipped_classifier:
            lines.append(f"  skipped classifier (other number of classes): {keys(self.skipped_classifier)}")
        if self.missing:
            lines.append(f"  missing in checkpoint ({len(self.missing)}): {keys(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected in checkpoint ({len(self.unexpected)}): {keys(self.unexpected)}")
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
    return {_strip_module(k): v for k, v in state.items()}


def _strip_module(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def _target_key(key: str, model_keys: set[str]) -> str | None:
    """The model key a checkpoint key maps to: itself (or its `DEAR_KEY_MAP` rename), with
    `backbone.` added, or with it removed."""
    for old, new in DEAR_KEY_MAP:
        if key.startswith(old) and key not in model_keys:
            key = new + key[len(old):]
            break
    candidates = [key, f"backbone.{key}"]
    if key.startswith("backbone."):
        candidates.append(key[len("backbone."):])
    return next((c for c in candidates if c in model_keys), None)


def _is_classifier(key: str) -> bool:
    return any(part in key for part in CLASSIFIER_KEY_PARTS)


def load_checkpoint(model: nn.Module, path: str | Path, *, strict_classifier: bool = False) -> LoadReport:
    """Loads an MMAction2 / DEAR `.pth` into `model` (a Recognizer or a bare backbone), in place.

    Args:
        model: the target; its keys are matched as described in the module docstring.
        path: the checkpoint, read with `torch.load(weights_only=True)`: a bare state dict, a dict
            whose `state_dict` entry is one, or a dear_ray training checkpoint (its folder or
            `state.pt`; the model weights are taken).
        strict_classifier: fail instead of skipping when a classifier tensor (key containing one of
            `CLASSIFIER_KEY_PARTS`) has another shape.

    Returns:
        The `LoadReport` (`str(report)` is a readable summary).

    Raises:
        FileNotFoundError: `path` does not exist.
        CheckpointError: unreadable file, not a state dict, or a shape mismatch on a
            non-classifier tensor (all mismatches are listed with both shapes).
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = model.state_dict()
    model_keys = set(own)
    to_load: dict[str, Tensor] = {}
    unexpected, skipped, mismatched = [], [], []
    for key, value in state.items():
        target = _target_key(key, model_keys)
        if target is None or target in to_load:
            unexpected.append(key)
            continue
        if value.shape != own[target].shape and own[target].dim() == 0 and value.numel() == 1:
            value = value.reshape(())  # a scalar saved as (1,) (DEAR's RPL radius)
        if value.shape != own[target].shape:
            if _is_classifier(target) and not strict_classifier:
                skipped.append(target)
            else:
                mismatched.append(
                    f"{key} -> {target}: checkpoint {tuple(value.shape)}, model {tuple(own[target].shape)}"
                )
            continue
        to_load[target] = value
    if mismatched:
        raise CheckpointError(f"{path}: shape mismatch for {len(mismatched)} tensor(s):\n  " + "\n  ".join(mismatched))
    model.load_state_dict(to_load, strict=False)
    missing = [k for k in own if k not in to_load and k not in skipped]
    return LoadReport(path=path, loaded=list(to_load), missing=missing, unexpected=unexpected,
                      skipped_classifier=skipped)


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a dear_ray training checkpoint's model weights as `{"state_dict": ...}` to `out`.

    The result is what MMAction2 and DEAR tools load, and what `model.pretrained` reads like any
    model-zoo file (a different class count skips the classifier). The optimizer, scheduler and
    RNG states stay behind.

    Args:
        checkpoint: a `checkpoint_epoch_*` folder written by `dear_ray.train` (or its `state.pt`).
        out: the `.pth` file to write (folders are created).

    Raises:
        FileNotFoundError: no checkpoint at `checkpoint`.
        CheckpointError: it is not a dear_ray training checkpoint.
    """
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
    meta = {"epoch": int(obj.get("epoch", -1)), "source": str(path)}
    torch.save({"state_dict": dict(obj["model"]), "meta": meta}, out)
    return out
