"""The notebook runs top to bottom on a real warehouse and draws its figures."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import FAST_TRAINING, PROJECT_ROOT, write_export_slice

pytestmark = pytest.mark.slow


def test_turbine_performance_notebook_executes(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_export_slice(workspace.landing / "jan.csv", "2014-01-01", "2014-01-20")
    workspace.run("__default__", FAST_TRAINING)
    monkeypatch.setenv("TURBINE_MONITOR_CONF_SOURCE", str(workspace.conf))
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / "turbine_performance.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(PROJECT_ROOT / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    assert any("predictions from" in o.get("text", "") for o in outputs)
