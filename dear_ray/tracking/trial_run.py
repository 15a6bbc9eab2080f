"""A trial's MLflow run, opened and closed in one place: opened (or continued) with its tags,
params and config file, ended FAILED / KILLED with its one-line cause, and the experiment it
belongs to. The training driver (`dear_ray.train.driver`) and the sweep runner use these.
"""

from __future__ import annotations

from dear_ray.config import ExperimentConfig, save_config


def end_failed_run(logger, err: BaseException, cfg: ExperimentConfig, trial: str) -> None:
    """A run that raised ends KILLED when interrupted (Ctrl-C), else FAILED with its one-line
    cause in the tag `error` (`dear_ray.train.bad_videos.describe_failure`)."""
    from dear_ray.train.bad_videos import describe_failure

    if isinstance(err, KeyboardInterrupt):
        logger.set_tags({"error": "interrupted (KeyboardInterrupt)"})
        logger.set_terminated("KILLED")
        return
    logger.set_tags({"error": describe_failure(err, cfg.run_root(), trial)})
    logger.set_terminated("FAILED")


def open_trial_run(cfg: ExperimentConfig, trial_name: str, *, experiment: str,
                   parent_run_id: str | None = None, run_id: str | None = None):
    """Open (or continue: `run_id`, or the run of that name under `parent_run_id`) a trial's
    MLflow run in this process and log its tags, params and config file; the `TrialLogger`.
    `cfg.tracking.uri` is the resolved URI. The trial driver calls it for its own run, a sweep's
    driver for all its trials' runs before they start."""
    from dear_ray.tracking.mlflow_runs import TrialLogger, artifact_location_for, run_tags

    resolved = cfg.to_dict()
    logger = TrialLogger(cfg.tracking.uri, experiment, run_name=trial_name,
                         parent_run_id=parent_run_id, run_id=run_id,
                         tags=run_tags(resolved, sweep=cfg.name, trial=trial_name),
                         artifact_location=artifact_location_for(cfg.tracking.uri,
                                                                 cfg.tracking.run_dir))
    try:
        logger.log_params(resolved)
        config_file = save_config(cfg, cfg.run_root() / "configs" / f"{trial_name}.yaml")
        logger.log_artifact(config_file, artifact_path="config")
    except BaseException as err:  # e.g. a changed param: the run must not stay RUNNING
        end_failed_run(logger, err, cfg, trial_name)
        raise
    return logger


def experiment_of(cfg: ExperimentConfig, tracking_uri: str, parent_run_id: str | None) -> str:
    """The parent run's experiment in a sweep, else `cfg.experiment_name()`."""
    if parent_run_id is None:
        return cfg.experiment_name()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    return client.get_experiment(experiment_id).name
