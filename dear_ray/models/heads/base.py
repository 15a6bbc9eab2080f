"""What every classification head is: the registry and the small base class the Recognizer relies on.

A head maps pooled backbone features `(B, F)` (after the recognizer's dropout) to logits `(B, K)`
and computes its own training loss, returned explicitly as a tensor (STYLE 7). Builders receive the
facts about the backbone they need as keyword arguments: `in_features` and `num_classes` always,
`debias_channels` only the heads with a CED branch (`dear`, `dear_alt`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dear_ray.registry import Registry

HEADS: Registry[Callable[..., nn.Module]] = Registry("head")


def register_head(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a head builder under the user-facing `name`."""
    return HEADS.register(name)


def create_head(name: str, **options: Any) -> Head:
    """Builds the head registered as `name`.

    Args:
        name: one of `list_heads()`.
        **options: the builder's keyword arguments (`in_features`, `num_classes`, ... and the head's
            own options such as `evidence="relu"`).

    Raises:
        UnknownNameError: unknown `name` (the message lists the known heads).
        ValueError: an option the builder does not take (the message lists the ones it does).
    """
    builder = HEADS.get(name)
    allowed = head_option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"head {name!r} got unknown option(s) {unknown}; it takes {sorted(allowed)}")
    return builder(**options)


def list_heads() -> list[str]:
    """The registered head names, sorted."""
    return HEADS.names()


def head_option_names(name: str) -> list[str]:
    """The keyword arguments the builder of head `name` accepts."""
    params = inspect.signature(HEADS.get(name)).parameters.values()
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


@dataclass(frozen=True)
class HeadInputs:
    """Everything a head's training loss may read.

    Attributes:
        features: (B, F) pooled backbone features after the recognizer's dropout.
        labels: (B,) class indices in [0, K).
        anneal: docs/methods.md#edl's lambda_t, computed by the training loop.
        iteration: global training iteration (CED alternating parity).
        debias_map: (B, C, T, H, W) backbone map for the CED branch, or None.
        scene: (B, P) soft scene pseudo-labels for SDN, or None.
        masked_features: (B, F) pooled features of the human-masked clips (after dropout), or None.
        shuffled_features: (B, F) pooled features (after dropout) of the same clips with their
            frames permuted in time, for heads with `uses_shuffled_clip` (psl), or None.
    """

    features: torch.Tensor
    labels: torch.Tensor
    anneal: float
    iteration: int
    debias_map: torch.Tensor | None = None
    scene: torch.Tensor | None = None
    masked_features: torch.Tensor | None = None
    shuffled_features: torch.Tensor | None = None


class Head(nn.Module):
    """Base of every head. Subclasses set the `uses_*` flags they need and implement
    `forward`, `loss` and `classifier_parameter_names`.

    Attributes:
        num_classes: K.
        uses_debias_map: the loss reads `HeadInputs.debias_map`.
        uses_scene: the loss reads `HeadInputs.scene` (required).
        uses_masked_features: the loss reads `HeadInputs.masked_features` (optional).
        uses_shuffled_clip: the loss reads `HeadInputs.shuffled_features` (the recognizer runs
            the backbone on the batch and its time-shuffled copy together; psl).
        mc_dropout: a stochastic test pass (`Recognizer.predict(stochastic_passes=S)`) keeps the
            recognizer's dropout on (MC dropout). False for `bnn`: DEAR's scripts turn dropout on
            at test only for its "dnn" configs (experiments/ood_detection.py, get_threshold.py
            `apply_dropout`), so a BNN pass only samples weights.
    """

    uses_debias_map: bool = False
    uses_scene: bool = False
    uses_masked_features: bool = False
    uses_shuffled_clip: bool = False
    mc_dropout: bool = True

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, features: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """Logits (B, K) from features (B, F); `sample=True` gives one stochastic test pass's
        logits (bnn: weight draws; the other heads ignore it)."""
        raise NotImplementedError

    def loss(self, inputs: HeadInputs) -> tuple[torch.Tensor, dict[str, float]]:
        """The head's training loss and its stats (python floats, including `acc`)."""
        raise NotImplementedError

    def classifier_parameter_names(self) -> set[str]:
        """Names (relative to the head) of the layers that output class scores."""
        raise NotImplementedError

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The features score stores keep, (B, F) -> (B, D): the pooled features themselves;
        psl overrides it with its L2-normalised embedding (what PSL's test score reads)."""
        return features


def check_positive(builder: str, **values: int) -> None:
    """Raise a ValueError naming the builder and argument for any value < 1."""
    for key, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{builder}: {key} must be a positive integer, got {value!r}")


def linear_classifier(in_features: int, num_classes: int, init_std: float) -> nn.Linear:
    """nn.Linear with MMAction2's head init: weight ~ N(0, init_std^2), bias 0."""
    fc = nn.Linear(in_features, num_classes)
    nn.init.normal_(fc.weight, std=init_std)
    nn.init.zeros_(fc.bias)
    return fc
