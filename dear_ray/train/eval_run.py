"""Evaluate a checkpoint without training: `dear-ray test CONFIG.yaml --checkpoint PATH`.

DEAR's README "Testing" runs five scripts per backbone in a fixed order (closed-set accuracy, the
uncertainty threshold, OOD histograms, open-set evaluation and openness curves, the confusion
matrix). Here one run does all of it: `run_test(cfg)` (a config with `eval_only: true` and
`model.pretrained`) runs `dear_ray.train.driver.run_training`, whose Ray Train workers load the
checkpoint and score every evaluation split in shards (`dear_ray.train.evaluation`), then
`report_run` reports the run exactly as `dear-ray train` reports a trained one
(`dear_ray.tracking.aggregate.report_run`: the stores evaluated as the sweep aggregator evaluates
a trial's, the table of docs/metrics.md with one row per method and unknown set, the openness curves,
histograms, reliability diagrams and confusion matrices under the run's `report/` artifacts, each
method's metrics under the aggregator's names such as `closed_top1`, `<unknown set>/open_maf1`,
post-hoc methods (a softmax model's `mc_dropout`, `openmax`) in runs `<trial>/<method>` nested
under it), plus DEAR's model-zoo table (`dear_ray.tracking.zoo`) when the rows are the paper's.
In a sweep, an `eval_only` case is a trial like the others and the sweep's aggregator reports it.

Accepted checkpoints: dear_ray's (a `checkpoint_epoch_*` folder or its `state.pt`), MMAction2's
and the released DEAR ones (`{"meta", "state_dict", "optimizer"}`, DEAR's key names for every
head), SDN's (`module.`-prefixed, `fc.` / `place_mlp.`), see `dear_ray.models.checkpoint`. The
file must provide every tensor of the configured model: `check_pretrained` builds the model on the
meta device in the driver and fails before any worker starts, naming the missing or unexpected
keys.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dear_ray.config import ExperimentConfig
from dear_ray.metrics.bootstrap import DEFAULT_CURVE_RESAMPLES, DEFAULT_RESAMPLES
from dear_ray.train.pretrained import check_pretrained

REPORT_ARTIFACTS = "report"


def run_test(cfg: ExperimentConfig, *, trial_name: str | None = None, callbacks=(),
             resamples: int = DEFAULT_RESAMPLES,
             curve_resamples: int = DEFAULT_CURVE_RESAMPLES) -> dict[str, Any]:
    """Evaluate `model.pretrained` on Ray Train workers, then report the run (`report_run`).

    Args:
        cfg: a validated config with `eval_only: true` (and so `model.pretrained`).
        trial_name: the Train and MLflow run's name (default `cfg.name`).
        callbacks: Ray Train `UserCallback`s.
        resamples, curve_resamples: bootstrap resamples of the report's intervals.

    Returns:
        `run_training`'s dict (`run_id`, `stores`, the evaluation metrics) plus `table` (the
        results table, None when the stores cannot be evaluated, e.g. no unknown set).

    Raises:
        ValueError: `cfg.eval_only` is not set.
        CheckpointError: the checkpoint does not fit the model (before any worker starts).
    """
    from dear_ray.tracking.mlflow_runs import resolve_tracking_uri
    from dear_ray.train.driver import run_training

    if not cfg.eval_only:
        raise ValueError("run_test: the config must set eval_only: true (and model.pretrained)")
    trial = trial_name or cfg.name
    out = run_training(cfg, trial_name=trial, callbacks=callbacks)
    out["table"] = report_run(cfg, trial, run_id=out["run_id"],
                              tracking_uri=resolve_tracking_uri(cfg), resamples=resamples,
                              curve_resamples=curve_resamples)
    return out


def report_run(cfg: ExperimentConfig, trial: str, *, run_id: str, tracking_uri: str,
               resamples: int = DEFAULT_RESAMPLES,
               curve_resamples: int = DEFAULT_CURVE_RESAMPLES) -> pd.DataFrame | None:
    """Evaluate one run's score stores and log the report to its MLflow run, as `dear-ray train`
    reports a trained run (`dear_ray.tracking.aggregate.report_run`), plus DEAR's model-zoo table.

    Writes `<run_dir>/<name>/report/<trial>/` (`evaluate_stores`' tables and plots, and
    `zoo.md` / `zoo.csv` when rows match DEAR's published ones, `dear_ray.tracking.zoo`), logs
    it under the run's `report/` artifacts, the run's own method's metrics into the run and each
    post-hoc method's into a nested run `<trial>/<method>` (the sweep aggregator's layout).

    Returns:
        The results table (a `trial` column first), or None when the stores cannot make one
        (e.g. no train, known test or unknown store: logged as a warning).
    """
    from mlflow import MlflowClient

    from dear_ray.tracking.aggregate import report_run as report_trained_run
    from dear_ray.tracking.zoo import write_zoo_report
    from dear_ray.train.evaluation import stores_dir

    out_dir = cfg.run_root() / REPORT_ARTIFACTS / trial
    table = report_trained_run(stores_dir(cfg, trial), out_dir, tracking_uri=tracking_uri,
                               experiment=cfg.experiment_name(), run_id=run_id, run_name=trial,
                               resamples=resamples, curve_resamples=curve_resamples,
                               **cfg.eval.report_options())
    if table is None or table.empty:
        return None
    zoo = write_zoo_report(table, out_dir)
    if zoo is not None:
        client = MlflowClient(tracking_uri)
        for path in (zoo, zoo.with_suffix(".csv")):
            client.log_artifact(run_id, str(path), REPORT_ARTIFACTS)
    return table


__all__ = ["check_pretrained", "report_run", "run_test"]
