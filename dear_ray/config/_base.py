"""The frozen base of every config section, and names shared by the sections."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")  # trial, run and unknown-set names
# the static-bias splits (StillMix's SCUBA / SCUFO; `DataConfig.static_bias`): known classes too
STATIC_BIAS_SPLITS = ("test_scuba", "test_scufo")
KNOWN_SPLITS = ("train", "val", "test", "test_shifted", *STATIC_BIAS_SPLITS)


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
