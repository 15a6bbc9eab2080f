"""Loading MMAction2 / DEAR model-zoo checkpoints into dear_ray modules.

Backbone keys follow MMAction2's naming (SPEC section 3), so a checkpoint loads after prefix mapping
only: `module.` (DataParallel) is stripped, and a leading `backbone.` is added or removed to match
the target (a full Recognizer has `backbone.*`/`cls_head.*` keys, a bare backbone has neither).
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
CLASSIFIER_KEY_PARTS = ("fc_cls", "aux_head.fc")


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


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
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
    """The model key a checkpoint key maps to: itself, with `backbone.` added, or with it removed."""
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
        path: the checkpoint, read with `torch.load(weights_only=True)`; either a bare state dict or a
            dict whose `state_dict` entry is one.
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
