"""Value types shared by the nodes, the datasets and the flows: what one passes to the
other. No I/O and no domain logic here; the datasets import nothing else of the project,
the nodes import no dataset module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import pandas as pd

if TYPE_CHECKING:
    from turbine_monitor.nbm import PowerModel

#: The column that holds, for a CSV line whose field count differs from the header, the
#: line as delivered (its other columns are null).
MALFORMED_LINE = "malformed_line"


class UnreadableFileError(Exception):
    """A source file that cannot be read as a table at all."""


class SourceFile(Protocol):
    """One export file of a landing folder, read only when asked."""

    name: str
    size_bytes: int
    modified_ns: int  # modification time, ns since the epoch

    @property
    def checksum(self) -> str:
        """sha256 of the content."""

    def read(self) -> pd.DataFrame:
        """Every field as the text delivered (missing as null), plus `MALFORMED_LINE`;
        raises `UnreadableFileError`."""


class WarehouseQuery(NamedTuple):
    """A read of the warehouse: SQL with `$name` parameters, and their values."""

    sql: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    """Stands in for an output that was not produced (Kedro passes no None between
    nodes), with the reason; datasets that receive it save nothing."""

    reason: str


@dataclass(frozen=True)
class AlertUpdate:
    """The alert episodes recomputed from `since` on (all start at or after it); the
    stored episodes that start earlier are final. `scored_through`: the newest
    `scored_at` among the predictions the detection read."""

    since: pd.Timestamp
    episodes: pd.DataFrame
    scored_through: pd.Timestamp


@dataclass
class RegisteredModel:
    """A model version from the registry, as loaded by alias."""

    version: str
    run_id: str
    power_model: PowerModel


@dataclass
class ModelRelease:
    """A newly trained model and the decision about it: registered as the challenger,
    promoted to champion when `promote`."""

    power_model: PowerModel
    input_example: pd.DataFrame
    promote: bool
    challenger_mae_kw: float
    champion_mae_kw: float | None
    champion_version: str | None
    holdout: dict = field(default_factory=dict)

    @property
    def decision(self) -> str:
        return "promoted" if self.promote else "kept_champion"
