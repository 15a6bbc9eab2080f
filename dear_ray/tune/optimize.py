"""A sweep's `optimize:` section: Optuna searches the sweep's `search:` space for the trade-off
between several objectives, each a metric of the results table computed at the trial's end.

    search:
      optim.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}
      model.head_options.hsic_weight: {type: uniform, low: 0.0, high: 1.0}
    num_samples: 24                  # Optuna trials
    optimize:
      algorithm: optuna              # Ray Tune's OptunaSearch (its TPE sampler, seeded)
      objectives: {closed_top1: max, auroc: max, contrast_acc: max}
      seed: 0

An objective is a column of the results table (`dear_ray.metrics.report.METRIC_KEYS`) on the
trial's own method row (its head's default score); a metric about an unknown set takes the
trial's only unknown set, or names it: `hmdb51/auroc`. When the trial has trained and scored its
splits, its driver evaluates its score stores (`trial_objectives`), writes them to
`<sweep>/objectives/<trial>.json` and reports them to Tune, which tells Optuna. The aggregator
then marks the Pareto front of all trials (`dear_ray.tracking.pareto_report`). docs/sweeps.md.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dear_ray.metrics.report import METRIC_KEYS, UNKNOWN_SET_KEYS
from dear_ray.tune._sections import SweepError

ALGORITHMS = ("optuna",)
OPTIMIZE_KEYS = {"algorithm", "objectives", "seed"}
OPTUNA_HINT = "pip install 'dear-ray[optuna]' (or: pip install 'optuna>=4,<5')"
# the evaluation splits an objective needs beyond the test split and an unknown set
NEEDED_SPLITS = {"shifted_top1": ("test_shifted",), "static_bias_gap": ("test_shifted",),
                 "scuba_top1": ("test_scuba",), "scufo_top1": ("test_scufo",),
                 "contrast_acc": ("test_scuba", "test_scufo")}


@dataclass(frozen=True)
class OptimizeSpec:
    """The parsed `optimize:` section: `objectives` maps a metric to `max` or `min`, in file order."""

    objectives: dict[str, str]
    algorithm: str = "optuna"
    seed: int = 0

    def tune_keys(self) -> list[str]:
        """The objectives' names in the results a trial reports to Tune (`tune_key`)."""
        return [tune_key(name) for name in self.objectives]

    def describe(self) -> str:
        goals = ", ".join(f"{way} {name}" for name, way in self.objectives.items())
        return f"optimize: {self.algorithm} (seed {self.seed}) towards {goals}"


def tune_key(objective: str) -> str:
    """`objective/<name>` with `/` in the name as `.` (Tune splits nested results on `/`)."""
    return "objective/" + objective.replace("/", ".")


def parse_optimize(raw: Any, src: str) -> OptimizeSpec | None:
    """The `optimize:` section, or None without one.

    Raises:
        SweepError: naming the key and the bad value.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SweepError(f"{src}: optimize: expected a mapping {{algorithm: optuna, objectives: "
                         f"{{closed_top1: max, auroc: max}}}}, got {raw!r}")
    unknown = sorted(set(raw) - OPTIMIZE_KEYS)
    if unknown:
        raise SweepError(f"{src}: optimize: unknown key(s) {unknown}; allowed: {sorted(OPTIMIZE_KEYS)}")
    algorithm = raw.get("algorithm", "optuna")
    if algorithm not in ALGORITHMS:
        raise SweepError(f"{src}: optimize.algorithm: {algorithm!r}; supported: {', '.join(ALGORITHMS)}")
    objectives = raw.get("objectives")
    if not isinstance(objectives, Mapping) or len(objectives) < 2:
        raise SweepError(f"{src}: optimize.objectives: expected at least two metrics with max or min "
                         f"(e.g. {{closed_top1: max, auroc: max}}), got {objectives!r}; one metric "
                         "is a single-objective search: `search:` with `scheduler:`")
    for name, way in objectives.items():
        _check_objective(str(name), way, src)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SweepError(f"{src}: optimize.seed: expected an integer >= 0, got {seed!r}")
    return OptimizeSpec({str(k): str(v) for k, v in objectives.items()}, algorithm, seed)


def _check_objective(name: str, way: Any, src: str) -> None:
    where = f"{src}: optimize.objectives.{name}"
    if way not in ("max", "min"):
        raise SweepError(f"{where}: {way!r}; expected max or min")
    unknown_set, _, metric = name.rpartition("/")
    if metric not in METRIC_KEYS or metric == "threshold":
        known = [k for k in METRIC_KEYS if k != "threshold"]
        raise SweepError(f"{where}: {metric!r} is not a metric of the results table; known: "
                         f"{', '.join(known)} (a metric about an unknown set may name it: hmdb51/auroc)")
    if unknown_set and metric not in UNKNOWN_SET_KEYS:
        raise SweepError(f"{where}: {metric!r} is not about an unknown set; write it without "
                         f"{unknown_set + '/'!r}")


def check_optimize_sweep(spec: Any, plans: list[Any]) -> None:
    """What `optimize` needs of the rest of the sweep: a `search:` space, no ASHA scheduler, no
    stages, one trial configuration (its settings vary through `search:` only), and the splits
    each objective is computed on; and Optuna installed.

    Raises:
        SweepError: naming the section and what to change.
    """
    opt, src = spec.optimize, spec.source
    if spec.stages:
        raise SweepError(f"{src}: optimize: not supported in a sweep with stages")
    if spec.scheduler is not None:
        raise SweepError(f"{src}: optimize and scheduler: ASHA stops trials on one metric; a "
                         "multi-objective search runs every trial to its end (drop scheduler:)")
    if not spec.search:
        raise SweepError(f"{src}: optimize: needs a search: space for Optuna to sample")
    if len(plans) != 1:
        raise SweepError(f"{src}: optimize: Optuna samples one trial configuration; grid and cases "
                         f"give {len(plans)} ({', '.join(p.name for p in plans)}): put what "
                         "varies under search: (type: choice for categories)")
    splits = set(plans[0].config.eval_splits())
    for name in opt.objectives:
        missing = [s for s in NEEDED_SPLITS.get(name.rpartition("/")[2], ()) if s not in splits]
        if missing:
            raise SweepError(f"{src}: optimize.objectives.{name}: needs the {', '.join(missing)} "
                             f"split(s), which trial {plans[0].name!r} does not score "
                             f"(its splits: {', '.join(sorted(splits))})")
    require_optuna(src)


def require_optuna(src: str) -> None:
    try:
        import optuna  # noqa: F401
    except ImportError as err:
        raise SweepError(f"{src}: optimize: algorithm optuna needs the optuna package, which is not "
                         f"installed ({err}); {OPTUNA_HINT}") from err


def make_searcher(opt: OptimizeSpec):
    """Tune's `OptunaSearch` over the objectives (Optuna's TPE sampler seeded by `opt.seed`); the
    search space comes from the Tuner's `param_space`."""
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=opt.tune_keys(), mode=list(opt.objectives.values()), seed=opt.seed)


def trial_objectives(cfg: Any, trial_name: str, objectives: Mapping[str, str]) -> dict[str, float]:
    """The objectives of one finished trial, from its score stores: the results table of its own
    method (`evaluate_stores`, no intervals, no plots, no post-hoc rows) under its config's
    protocol and report settings.

    Raises:
        ValueError: naming the trial, when it left no stores, or an objective has no value (an
            unknown set it does not have, or more than one to choose from).
    """
    from pathlib import Path

    from dear_ray.metrics.evaluate import evaluate_stores
    from dear_ray.scores.store import read_score_store
    from dear_ray.train.evaluation import stores_dir

    stores = stores_dir(cfg, trial_name)
    paths = sorted(stores.glob("*.parquet"))
    if not paths:
        raise ValueError(f"trial {trial_name}: no score stores under {stores} to compute the "
                         f"objectives {', '.join(objectives)} from")
    meta = read_score_store(paths[0]).meta
    with tempfile.TemporaryDirectory(prefix="objectives-") as tmp:
        table = evaluate_stores(paths, Path(tmp), plots=False, resamples=0, curve_resamples=0,
                                posthoc=(), posthoc_tune="none", protocol=cfg.eval.protocol,
                                **cfg.eval.report_options())
    own = table[table["method"] == (meta.method or meta.head)]
    own = own[own["score"] == own["score"].iloc[0]] if len(own) else own
    return {name: _objective_value(own, name, trial_name) for name in objectives}


def _objective_value(own, name: str, trial_name: str) -> float:
    unknown_set, _, metric = name.rpartition("/")
    sets = [s for s in own["unknown_set"].unique() if "-minus-" not in str(s) and s != "all"]
    if not sets:
        raise ValueError(f"trial {trial_name}: no result row of its own method to read {name} from")
    if unknown_set and unknown_set not in sets:
        raise ValueError(f"trial {trial_name}: objective {name}: no unknown set {unknown_set!r}; "
                         f"its unknown sets: {', '.join(map(str, sets))}")
    if not unknown_set and metric in UNKNOWN_SET_KEYS and len(sets) > 1:
        raise ValueError(f"trial {trial_name}: objective {name}: the trial has {len(sets)} unknown "
                         f"sets ({', '.join(map(str, sets))}); name one, e.g. {sets[0]}/{metric}")
    row = own[own["unknown_set"] == (unknown_set or sets[0])].iloc[0]
    value = row[metric]
    if value is None or pd.isna(value) or math.isnan(float(value)):
        raise ValueError(f"trial {trial_name}: objective {name} has no value (its splits give no {metric})")
    return float(value)


def slug_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's sampled values as JSON-safe scalars (numpy numbers to Python's)."""
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in params.items()}

