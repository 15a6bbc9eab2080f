"""dear_ray: open-set and debiased video action recognition on Ray."""

__version__ = "0.1.0"
