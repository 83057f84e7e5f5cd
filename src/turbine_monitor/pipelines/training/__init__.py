"""Training: the normal-behaviour power model of a farm, tracked and registered in MLflow."""

from .pipeline import create_pipeline, create_plan_pipeline

__all__ = ["create_pipeline", "create_plan_pipeline"]
