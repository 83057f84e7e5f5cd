"""The installed environment: every module of the heavy packages is compiled to bytecode
(`make setup` installs with UV_COMPILE_BYTECODE=1, then compiles the project's sources),
so that a process started where Python may not write `__pycache__`
(PYTHONDONTWRITEBYTECODE=1) does not compile its imports again: every flow run of the
live loop is such a process."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

HEAVY = ["prefect", "kedro", "kedro_mlflow", "mlflow", "pandas", "sklearn", "duckdb", "pyarrow", "sqlalchemy"]


@pytest.mark.parametrize("package", HEAVY)
def test_every_module_of_the_package_has_its_bytecode(package: str):
    """Import alone would compile only the modules a test happened to import (a few
    percent of mlflow's); the install compiles all of them."""
    root = Path(importlib.import_module(package).__file__).parent
    sources = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    missing = [p for p in sources if not Path(importlib.util.cache_from_source(str(p))).exists()]
    assert sources and len(missing) <= 0.02 * len(sources), (
        f"{len(missing)} of {len(sources)} modules of {package} have no bytecode, e.g. {missing[:3]}: "
        "install with `make setup` (UV_COMPILE_BYTECODE=1) or `uv sync --compile-bytecode`")


def test_setup_compiles_the_project_sources_too():
    """The project is installed editable (its sources stay in src/, outside the
    environment that UV_COMPILE_BYTECODE compiles); a test run's own imports would write
    its bytecode anyway, so the install command is what is checked."""
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    recipe = makefile.split("\nsetup:", 1)[1].split("\n\n", 1)[0]
    assert "UV_COMPILE_BYTECODE=1 uv sync" in recipe
    assert any("compileall" in line and " src" in line for line in recipe.splitlines())
