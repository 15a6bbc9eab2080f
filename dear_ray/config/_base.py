"""The frozen base of every config section, and the name pattern shared by the sections (split
names: `dear_ray.splits`)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")  # trial, run and unknown-set names


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
