"""turbine-monitor: a wind-turbine performance monitor."""

__version__ = "0.1.0"
