"""The run-side config sections: Ray Train workers, checkpoints, MLflow tracking, injected faults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from dear_ray.config._base import Section as _Section


class ResourcesConfig(_Section):
    """Ray Train workers. `num_workers: 0` runs the loop in the driver process (no cluster).

    `amp`: bf16 autocast in training: `gpu` (default) on GPU workers only, `true` on CPU workers
    too, `false` never (the score stores stay fp32 either way unless `eval.precision: amp`).
    `channels_last_3d`: the model's 5-D weights and clips in channels-last memory, with the same
    three values. Measured on this project's 2-core AMD EPYC (avx512_bf16, no AMX), one thread,
    the demo's r3d18_tiny step (batch 16 x 16 x 40 x 40, forward + backward + AdamW): fp32
    130-138 ms, channels_last_3d 112-119 ms (i3d_tiny at 8 x 56 x 56: no faster), + bf16
    autocast 89-90 ms.
    """

    num_workers: int = Field(1, ge=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(1.0, ge=0.0)
    amp: bool | Literal["gpu"] = "gpu"
    channels_last_3d: bool | Literal["gpu"] = "gpu"
    max_failures: int = Field(0, ge=-1)

    def applies(self, option: str, *, on_gpu: bool) -> bool:
        """Whether `amp` / `channels_last_3d` is on for a worker (`gpu`: on GPU workers only)."""
        value = getattr(self, option)
        return value is True or (value == "gpu" and on_gpu)


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
