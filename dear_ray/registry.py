"""One flat name -> builder registry, used only for names that users type in YAML or on the CLI.

Backbones, heads and scores each get one instance (see `dear_ray.models` and `dear_ray.scores`).
An unknown name raises an error that lists every registered name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry(Generic[T]):
    """A flat mapping from a user-facing name to a builder function.

    Args:
        kind: what the registry holds ("backbone", "head", "score"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator registering a builder under `name` (default: the function's name)."""

        def deco(fn: T) -> T:
            key = name or fn.__name__
            if key in self._builders:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._builders[key] = fn
            return fn

        return deco

    def get(self, name: str) -> T:
        try:
            return self._builders[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, **options: Any) -> Any:
        return self.get(name)(**options)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders
