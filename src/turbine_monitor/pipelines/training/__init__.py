"""Training: the normal-behaviour power model, tracked and registered in MLflow."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
