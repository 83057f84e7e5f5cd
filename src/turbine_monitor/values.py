"""Value types shared by the nodes, the datasets and the flows: what one passes to the
other. No I/O and no domain logic here; the datasets import nothing else of the project,
the nodes import no dataset module."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import click
import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa

    from turbine_monitor.nbm import PowerModel

#: The column that holds, for a CSV line whose field count differs from the header, the
#: line as delivered (its other columns are null).
MALFORMED_LINE = "malformed_line"


class UnreadableFileError(Exception):
    """A source file that cannot be read as a table at all."""


class SourceFile(Protocol):
    """One export file of a farm (`<farm_id>/<file name>`), read only when asked."""

    name: str
    size_bytes: int
    modified_ns: int  # modification time, ns since the epoch

    @property
    def checksum(self) -> str:
        """sha256 of the content."""

    def read(self) -> pa.Table:
        """Every field as the text delivered (missing as null), plus `MALFORMED_LINE`;
        raises `UnreadableFileError`."""

    def metadata(self) -> dict[str, str]:
        """The `key: value` lines before the header (e.g. `Turbine`, `Time zone`)."""


@dataclass(frozen=True)
class Partition:
    """Some farms' share of a dataset or of a node's output, produced when called."""

    farms: tuple[str, ...]
    produce: Callable[[], Any]

    def __call__(self) -> Any:
        return self.produce()

    @property
    def name(self) -> str:
        """The farm's id, or the first farm's and how many more."""
        more = len(self.farms) - 1
        return self.farms[0] if not more else f"{self.farms[0]} +{more} farm{'s' if more > 1 else ''}"


class Partitions(dict[str, Partition]):
    """Work of several farms, by partition name, produced one partition at a time: a
    partition is one farm, or several farms whose work together is small (a live run's
    few new records of every farm), so that memory follows the largest partition, not
    the fleet. A dataset saving partitions produces and commits each in turn, and adds
    what it saved of each (a small dict, e.g. `{"rows": 144}`) to `saved`; under Prefect
    each partition is its own task run."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.saved: list[dict[str, Any]] = []

    @classmethod
    def of(cls, groups: Iterable[tuple[str, ...]], produce: Callable[[tuple[str, ...]], Any]) -> Partitions:
        """One partition per group of farms, produced by `produce(farms)`."""
        partitions = [Partition(farms, partial(produce, farms)) for farms in groups]
        return cls({partition.name: partition for partition in partitions})

    def map(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Partitions:
        """The same partitions, each produced as `func(<this partition's data>, *args, **kwargs)`."""
        return Partitions({name: Partition(p.farms, partial(_apply, func, p, args, kwargs))
                           for name, p in self.items()})


def _apply(func: Callable[..., Any], partition: Partition, args: tuple, kwargs: dict) -> Any:
    return func(partition(), *args, **kwargs)


def group_farms(weights: Iterable[tuple[str, float]], budget: float) -> list[tuple[str, ...]]:
    """Farms in groups, in order, each as large as fits `budget` (a farm heavier than
    the budget alone); a budget of 0 puts every farm on its own."""
    groups: list[list[str]] = []
    total = 0.0
    for farm, weight in weights:
        if groups and budget > 0 and total + weight <= budget:
            groups[-1].append(farm)
            total += weight
        else:
            groups.append([farm])
            total = weight
    return [tuple(group) for group in groups]


@dataclass(frozen=True)
class FarmResult:
    """What a node produced for a partition: `data` for the farms that succeeded, and
    why the others failed (their work is left for a later run)."""

    data: Any
    failures: dict[str, Exception] = field(default_factory=dict)


class FarmFailures(click.ClickException):
    """Some farms' work failed; the other farms' was committed. Names the farms and why.
    A Click exception, so that `kedro run` prints it as one message, not a traceback."""

    def __init__(self, failures: dict[str, Exception]):
        self.failures = failures
        by_reason: dict[str, list[str]] = {}
        for farm, error in failures.items():
            by_reason.setdefault(f"{type(error).__name__}: {error}", []).append(repr(farm))
        super().__init__("the work of some farms failed (the other farms' is saved): " + "; ".join(
            f"{'farm' if len(farms) == 1 else f'{len(farms)} farms'} {', '.join(farms)}: {reason}"
            for reason, farms in by_reason.items()))

    def __reduce__(self) -> tuple:
        return type(self), (self.failures,)


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
    """Alert detection of some farms. `farms` (farm_id, since, scored_through,
    resume_from): per farm, from when its episodes were recomputed (the stored ones that
    start earlier are final, but for an open one continued), the newest `scored_at`
    among the predictions read, and the first timestamp of its earliest stop run still
    in progress (NaT: none). `episodes`: the recomputed episodes (those starting at or
    after their farm's `since`, and the open ones continued); what the next run
    continues from: `days`, the detector's day sums from the day of `since` on,
    `evidence`, its evidence records from `since` on, and `open_episodes`, the farms'
    open underperformance episodes with their sums."""

    farms: pd.DataFrame
    episodes: pd.DataFrame
    days: pd.DataFrame
    evidence: pd.DataFrame
    open_episodes: pd.DataFrame


@dataclass
class RegisteredModel:
    """A model version from the registry, as loaded by alias."""

    version: str
    run_id: str
    power_model: PowerModel


class FarmModels(dict[str, Callable[[], RegisteredModel]]):
    """Registered models by farm id, each loaded when its function is called."""


@dataclass
class ModelRelease:
    """A newly trained model and the decision about it: registered as the challenger,
    promoted to champion when `promote`."""

    farm_id: str
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
