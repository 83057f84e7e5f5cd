"""Project hooks."""

import gc
import weakref

import mlflow

from tests.conftest import FAST_TRAINING, write_export_slice
from turbine_monitor.hooks import FrozenStartupObjects


def test_an_untracked_pipeline_after_a_tracked_one_leaves_no_mlflow_run_open(
        workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_export_slice(workspace.landing / "jan.csv", "2014-01-01", "2014-01-08")
    workspace.run("ingestion")
    workspace.run("training", FAST_TRAINING)
    workspace.run("inference")
    assert mlflow.active_run() is None


def test_startup_objects_are_frozen_at_the_first_pipeline_run_only():
    """What exists at the first run is kept off the collector; garbage left after it is
    still collected, however many runs follow in the process."""

    class Cyclic:
        pass

    hooks = FrozenStartupObjects()
    startup = Cyclic()
    startup.self = startup
    before = gc.get_freeze_count()
    hooks.before_pipeline_run()
    assert gc.get_freeze_count() > before
    garbage = Cyclic()
    garbage.self = garbage
    collected = weakref.ref(garbage)
    hooks.before_pipeline_run()
    del garbage
    gc.collect()
    assert collected() is None
    frozen = weakref.ref(startup)
    del startup
    gc.collect()
    assert frozen() is not None
