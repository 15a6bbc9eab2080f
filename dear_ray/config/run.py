"""The run-side config sections: Ray Train workers, checkpoints, MLflow tracking, injected faults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from dear_ray.config._base import Section as _Section


class ResourcesConfig(_Section):
    """Ray Train workers. `num_workers: 0` runs the loop in the calling process, no worker group:
    `dear-ray train` runs it in its own process (no Ray instance); a sweep trial in its Tune
    trial process, which then holds `trial_resources` plus one worker's `cpus_per_worker` (and
    `gpus_per_worker`) and reports every epoch to Tune itself. The checkpoints then stay in the
    run folder (`<run_dir>/<name>/ray/<trial>/checkpoint_epoch_*`) and a resumed or retried run
    continues after the last complete one; a failure is retried by the sweep's `max_failures`
    (Tune), `resources.max_failures` restarts worker groups only. For small trials on a few cores
    it saves each trial the start of a Train controller and worker (the demo: ~15-18 s a trial).

    `amp`: bf16 autocast on GPU workers only, the faster option; the paper sweeps set it false,
    as the released DEAR, SDN and PSL code trains in fp32 (bf16 autocast on this project's CPU
    made the demo's step 27% faster, but every demo trial's loss went NaN within 1-8 epochs with
    torch 2.14, so CPU workers stay fp32). `channels_last_3d`: the model and its 5-D clips in
    channels-last memory: `gpu` (default) on GPU workers only, `true` on CPU workers too (the
    demo's r3d18_tiny step at batch 16 x 16 x 40 x 40 measured 12-15% faster on this machine's
    CPU; i3d_tiny at 8 x 56 x 56 was no faster), `false` never.

    `cudnn_benchmark`: let cuDNN pick its fastest convolution algorithms on GPU workers (faster
    for fixed clip shapes, not bit-reproducible between runs); off by default.
    `check_every_n_steps`: how often the training loop reads the loss back from the device (the
    epoch's loss sums and the NaN/inf check): 1 (default) checks every step before its update;
    N > 1 saves a device synchronisation a step and names the steps since the last check when a
    loss went bad. The epoch's metrics are the same for every N.
    """

    num_workers: int = Field(1, ge=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(1.0, ge=0.0)
    amp: bool = True
    channels_last_3d: bool | Literal["gpu"] = "gpu"
    max_failures: int = Field(0, ge=-1)
    cudnn_benchmark: bool = False
    check_every_n_steps: int = Field(1, ge=1)


class CheckpointConfig(_Section):
    """A checkpoint every `every_n_epochs` epochs (and at the last); Ray keeps `num_to_keep`."""

    every_n_epochs: int = Field(1, ge=1)
    num_to_keep: int | None = Field(2, ge=1)


class TrackingConfig(_Section):
    """MLflow: `uri` (default: env `MLFLOW_TRACKING_URI`, then `sqlite:///<run_dir>/mlflow.db`)."""

    uri: str | None = None
    experiment: str | None = None
    run_dir: str = "runs"

    @field_validator("run_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value:
            raise ValueError("expected a folder path, got an empty string")
        return str(Path(value).expanduser().absolute())


class DebugConfig(_Section):
    """Injected faults for tests: the worker dies once at the start of epoch `fail_at_epoch`."""

    fail_at_epoch: int | None = Field(None, ge=0)
