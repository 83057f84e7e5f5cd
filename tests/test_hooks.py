"""Project hooks."""

import mlflow

from tests.conftest import FAST_TRAINING, write_export_slice


def test_an_untracked_pipeline_after_a_tracked_one_leaves_no_mlflow_run_open(
        workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_export_slice(workspace.landing / "jan.csv", "2014-01-01", "2014-01-08")
    workspace.run("ingestion")
    workspace.run("training", FAST_TRAINING)
    workspace.run("inference")
    assert mlflow.active_run() is None
