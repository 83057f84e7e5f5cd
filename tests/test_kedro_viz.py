"""kedro-viz builds the pipeline graph headless, into a folder of the test's own."""

import json
import shutil
import subprocess
import sys

import pytest
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_kedro_viz_build_writes_every_registered_node(tmp_path):
    """`kedro viz build` writes `build/` where it runs: in a copy of the project's
    metadata and configuration (the package itself is the installed one)."""
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, tmp_path)
    shutil.copytree(PROJECT_ROOT / "conf" / "base", tmp_path / "conf" / "base")
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "src").mkdir()
    subprocess.run([sys.executable, "-m", "kedro", "viz", "build"], cwd=tmp_path, check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    graph = json.loads((tmp_path / "build" / "api" / "main").read_text())
    built = {n["name"] for n in graph["nodes"] if n["type"] == "task"}
    bootstrap_project(PROJECT_ROOT)
    assert built == {n.name for n in pipelines["__default__"].nodes}
