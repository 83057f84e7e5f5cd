"""Reporting: each turbine's energy, expected energy, losses by category, availability
and coverage per UTC day (table `kpi_daily`)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
