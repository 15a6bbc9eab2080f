"""MLflow tracking (`mlflow_runs`) and the results aggregator (`aggregate.report_sweep`)."""

from dear_ray.tracking.mlflow_runs import (
    TrackingError,
    TrialLogger,
    check_tracking_uri,
    default_tracking_uri,
    ensure_experiment,
    flatten_params,
    resolve_tracking_uri,
    run_tags,
    start_parent_run,
)

__all__ = ["TrackingError", "TrialLogger", "check_tracking_uri", "default_tracking_uri",
           "ensure_experiment", "flatten_params", "resolve_tracking_uri", "run_tags",
           "start_parent_run"]
