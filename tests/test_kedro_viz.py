"""kedro-viz builds the pipeline graph headless."""

import json
import subprocess
import sys

from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT


def test_kedro_viz_build_writes_every_registered_node():
    subprocess.run([sys.executable, "-m", "kedro", "viz", "build"], cwd=PROJECT_ROOT, check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    graph = json.loads((PROJECT_ROOT / "build" / "api" / "main").read_text())
    built = {n["name"] for n in graph["nodes"] if n["type"] == "task"}
    bootstrap_project(PROJECT_ROOT)
    assert built == {n.name for n in pipelines["__default__"].nodes}
