"""Project hooks."""

import mlflow

from tests.conftest import write_export_slice

FAST = {"training": {"window_days": 30, "holdout_days": 5, "estimator": {"max_iter": 20}}}


def test_an_untracked_pipeline_after_a_tracked_one_leaves_no_mlflow_run_open(
        workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_export_slice(workspace.landing / "jan.csv", "2014-01-01", "2014-01-08")
    workspace.run("ingestion")
    workspace.run("training", FAST)
    workspace.run("inference")
    assert mlflow.active_run() is None
