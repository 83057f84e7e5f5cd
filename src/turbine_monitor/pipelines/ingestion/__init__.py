"""Ingestion: SCADA export files into the DuckDB warehouse."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
