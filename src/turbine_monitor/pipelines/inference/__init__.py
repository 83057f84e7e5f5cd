"""Inference: score new SCADA rows with the champion and keep the alerts up to date."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
