"""Ingestion pipeline: the fleet checked, its turbines listed, and each farm's new
source files read, validated and committed to the warehouse, one farm (or one bounded
chunk of a farm's files) per batch."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import check_fleet, ingest_new_sources, list_turbines


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(check_fleet, ["fleet", "farm_assets"], "farms", name="check_fleet"),
            node(list_turbines, "farms", "turbines", name="list_turbines"),
            node(
                ingest_new_sources,
                inputs=["farm_sources", "ingested_sources", "farms", "params:ingestion"],
                outputs="scada@batch",
                name="ingest_new_sources",
            ),
        ]
    )
