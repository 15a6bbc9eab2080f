"""A model's score stores grouped by split, and the rows (`Plan`s) a model yields (docs/metrics.md).

Stores are grouped by model (`StoreMeta.run`, `StoreMeta.method`); each group needs one `train`
store (not imported stores: their threshold comes with them), one known test store (`test`, else `val`), one or more `unknown` stores and optionally a
`test_shifted` store, `test_scuba` / `test_scufo` stores (the static-bias sets), a `val` store
(held out for post-hoc fits such as the temperature) and a `val_unknown` store (held-out unknowns:
with `val`, they choose the post-hoc detectors' hyper-parameters, `dear_ray.metrics.posthoc_tune`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dear_ray.scores import ScoreStore


@dataclass
class ModelStores:
    """The stores of one model; `val` is set only when a `test` store is the known set too;
    `scuba`, `scufo`: its `test_scuba` / `test_scufo` stores, when it has them; `val_unknown`: its
    validation unknowns (never evaluated, only used to choose hyper-parameters)."""

    run: str
    method: str
    train: ScoreStore | None
    known: ScoreStore
    unknown: list[ScoreStore]
    shifted: ScoreStore | None
    val: ScoreStore | None = None
    scuba: ScoreStore | None = None
    scufo: ScoreStore | None = None
    val_unknown: ScoreStore | None = None

    @property
    def all(self) -> list[ScoreStore]:
        """The stores every row is evaluated on (`val` only feeds fits)."""
        return [s for s in (self.train, self.known) if s] + list(self.unknown) \
            + [s for s in (self.shifted, self.scuba, self.scufo) if s]

    def with_scores(self, name: str, fn: Callable[[ScoreStore], np.ndarray]) -> ModelStores:
        """A copy whose evaluated stores all carry score `name` = `fn(store)`."""
        add = lambda s: s.with_scores({name: fn(s)}) if s is not None else None  # noqa: E731
        return ModelStores(self.run, self.method, add(self.train), add(self.known), [add(u) for u in self.unknown],
                           add(self.shifted), self.val, add(self.scuba), add(self.scufo), self.val_unknown)


@dataclass(frozen=True)
class Plan:
    """One row a model yields: the method label, the score, the stores, OpenMax's decisions.

    `fewer_resamples`: a post-hoc row whose intervals use `evaluate_stores`' smaller
    `posthoc_resamples` (the demo report stays fast with many post-hoc rows).
    `description`: what a post-hoc row's score reads and was fitted on (which features, which
    statistics, its hyper-parameters; `dear_ray.metrics.posthoc`), empty for the others.
    `params`: a post-hoc row's hyper-parameters (chosen on the validation split or the defaults).
    """

    method: str
    score: str
    stores: ModelStores
    decide: object = None  # callable store -> (N,) decisions in [0, K], or None (threshold)
    fewer_resamples: bool = False
    description: str = ""
    params: Mapping[str, object] = field(default_factory=dict)


def group_stores(stores: Sequence[ScoreStore]) -> list[ModelStores]:
    """Group stores by (run, method); errors name the run and the missing or duplicated split."""
    by_model: dict[tuple[str, str], list[ScoreStore]] = defaultdict(list)
    for store in stores:
        by_model[(store.meta.run, store.meta.method)].append(store)
    groups = []
    for (run, method), members in sorted(by_model.items()):
        split: dict[str, list[ScoreStore]] = defaultdict(list)
        for store in members:
            split[store.meta.split].append(store)
        for name, found in split.items():
            if name != "unknown" and len(found) > 1:
                raise ValueError(f"run {run!r} ({method}): {len(found)} {name!r} stores: "
                                 + ", ".join(str(s.path) for s in found))
        known = split.get("test") or split.get("val")
        imported = bool(known) and known[0].meta.imported
        missing = [n for n, ok in (("train", split.get("train") or imported), ("test (or val)", known),
                                   ("unknown", split.get("unknown"))) if not ok]
        if missing:
            files = ", ".join(str(s.path) for s in members)
            raise ValueError(f"run {run!r} ({method}): no {' / '.join(missing)} store among {files}")
        unknown = sorted(split["unknown"], key=lambda s: (s.meta.dataset, str(s.path)))
        val = split["val"][0] if split.get("test") and split.get("val") else None
        optional = {name: (split.get(name) or [None])[0]
                    for name in ("test_shifted", "test_scuba", "test_scufo", "val_unknown")}
        groups.append(ModelStores(run, method, (split.get("train") or [None])[0], known[0], unknown,
                                  optional["test_shifted"],
                                  val, scuba=optional["test_scuba"], scufo=optional["test_scufo"],
                                  val_unknown=optional["val_unknown"]))
    return groups
