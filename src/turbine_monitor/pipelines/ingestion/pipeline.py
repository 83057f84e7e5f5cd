"""Ingestion pipeline: new source files -> validated records -> one warehouse batch."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import (
    assemble_ingestion_batch,
    check_source_files,
    read_new_sources,
    resolve_batch_duplicates,
    validate_records,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                read_new_sources,
                inputs=["bundled_scada_history", "landing_files", "ingested_sources"],
                outputs=["raw_records", "source_manifest"],
                name="read_new_sources",
            ),
            node(
                check_source_files,
                inputs=["source_manifest", "params:ingestion"],
                outputs="checked_sources",
                name="check_source_files",
            ),
            node(
                validate_records,
                inputs=["raw_records", "checked_sources", "asset_table", "params:ingestion"],
                outputs="validated_records",
                name="validate_records",
            ),
            node(
                resolve_batch_duplicates,
                inputs="validated_records",
                outputs="deduplicated_records",
                name="resolve_batch_duplicates",
            ),
            node(
                assemble_ingestion_batch,
                inputs=["deduplicated_records", "raw_records", "checked_sources"],
                outputs="scada@batch",
                name="assemble_ingestion_batch",
            ),
        ]
    )
