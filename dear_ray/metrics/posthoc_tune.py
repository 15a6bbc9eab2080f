"""Post-hoc detector hyper-parameters chosen on a validation split, never on test data.

OpenOOD v1.5's automatic parameter search (APS; `openood/evaluators/ood_evaluator.py`
`hyperparam_search`, the `postprocessor_sweep` lists of `configs/postprocessors/<name>.yml`):
every combination of a detector's grid is scored on the known validation split and on held-out
validation unknowns, and the combination with the highest AUROC (known vs unknown) is kept; of
tied combinations OpenOOD keeps the LAST in its enumeration order (the first parameter varies
fastest), and so does `choose`. Here the known validation split is the model's `val` store and the
unknowns its `val_unknown` store (docs/synthetic_data.md: unknown motions that are never test
unknowns); the detector is fitted on the `train` store as without tuning. Nothing else is read:
`choose` receives those two stores only.

The grids (`GRIDS`) are OpenOOD v1.5's; detectors with a one-value sweep there (DICE p 90, NNGuide
K 100 alpha 0.01, energy T 1) or none (MSP, max-logit, Mahalanobis, RMDS, SHE) are not tuned, and
the temperature of `temp_msp` is fitted on `val` by its NLL (`dear_ray.scores.posthoc`).
Candidates a model cannot take are dropped before the search: KNN's k >= the training videos,
ViM's dim >= the feature width F (OpenOOD's 256 / 1000 assume ImageNet-sized features; with none
left ViM keeps its default dim, F/2 below F = 512). docs/scores.md lists all of it.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from dear_ray.scores import ScoreStore
from dear_ray.scores import SCORES

TUNE_MODES = ("none", "val")

#: OpenOOD v1.5's `postprocessor_sweep` grids, under dear_ray's keyword names.
GRIDS: dict[str, dict[str, tuple]] = {
    "knn": {"k": (50, 100, 200, 500, 1000)},
    "react": {"percentile": (85, 90, 95, 99)},
    "ash": {"percentile": (65, 70, 75, 80, 85, 90, 95)},
    "scale": {"percentile": (65, 70, 75, 80, 85, 90, 95)},
    "gen": {"gamma": (0.01, 0.1, 0.5, 1, 2, 5, 10), "m": (10, 50, 100, 200, 500, 1000)},
    "vim": {"dim": (256, 1000)},
    "fdbd": {"distance_as_normalizer": (True, False)},
}
# the constructor keywords that are not hyper-parameters
_NOT_PARAMS = {"weight", "bias", "seed"}


@dataclass(frozen=True)
class Choice:
    """The hyper-parameters `choose` kept, their validation AUROC and what it was measured on."""

    params: dict
    auroc: float
    candidates: int
    num_known: int
    num_unknown: int

    def describe(self) -> str:
        given = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (f"{given} chosen by AUROC {100 * self.auroc:.1f} on val ({self.num_known}) vs "
                f"val_unknown ({self.num_unknown}) over {self.candidates} candidates")


def candidates(name: str, *, num_train: int, num_features: int | None) -> list[dict]:
    """The grid of detector `name` in OpenOOD's order (first parameter fastest), without the
    values this model cannot take; `[]` for a detector that is not tuned."""
    grid = dict(GRIDS.get(name, {}))
    if "k" in grid and name == "knn":
        grid["k"] = tuple(k for k in grid["k"] if k < num_train)
    if name == "vim" and num_features is not None:
        grid["dim"] = tuple(d for d in grid["dim"] if d < num_features)
    if not grid or not all(grid.values()):
        return []
    keys = list(grid)
    combos = itertools.product(*(grid[k] for k in reversed(keys)))  # last key slowest
    return [dict(zip(reversed(keys), combo, strict=True)) for combo in combos]


def uncertainty_auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """AUROC of telling unknown from known by an uncertainty (higher = more unknown)."""
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    labels = np.r_[np.zeros(known.size), np.ones(unknown.size)]
    return float(roc_auc_score(labels, np.r_[known, unknown]))


def choose(grid: list[dict], build: Callable[[dict], Callable[[ScoreStore], np.ndarray]],
           val: ScoreStore, val_unknown: ScoreStore) -> Choice | None:
    """The combination of `grid` whose detector (`build(params)`: store -> uncertainties) best
    separates `val` from `val_unknown` by AUROC (ties: the last, as OpenOOD). A candidate that
    fails to fit (ValueError, LinAlgError) is passed over; None when none is left.

    Only `val` and `val_unknown` are scored: the test splits never reach this function.
    """
    best: tuple[float, dict] | None = None
    tried = 0
    for params in grid:
        try:
            fn = build(params)
            auroc = uncertainty_auroc(fn(val), fn(val_unknown))
        except (ValueError, np.linalg.LinAlgError):
            continue
        tried += 1
        if np.isfinite(auroc) and (best is None or auroc >= best[0]):
            best = (auroc, params)
    if best is None:
        return None
    return Choice(dict(best[1]), best[0], tried, len(val), len(val_unknown))


def effective_params(name: str, options: Mapping[str, object]) -> dict:
    """The hyper-parameters a detector runs with: its constructor's defaults under `options`
    (classifier weights and seeds left out), JSON-safe."""
    try:
        factory = SCORES.get(name)
    except KeyError:
        return dict(options)
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
                and p.name not in _NOT_PARAMS}
    merged = {**defaults, **{k: v for k, v in options.items() if k not in _NOT_PARAMS}}
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in merged.items()}


def params_json(params: Mapping[str, object]) -> str:
    """The `detector_params` cell: sorted JSON, `""` for none."""
    return json.dumps(dict(sorted(params.items()))) if params else ""


__all__ = ["GRIDS", "TUNE_MODES", "Choice", "candidates", "choose", "effective_params", "params_json",
           "uncertainty_auroc"]
