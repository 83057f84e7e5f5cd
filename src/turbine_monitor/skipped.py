"""The value a node returns for an output it did not produce (Kedro passes no None
between nodes); datasets that receive it save nothing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Skipped:
    """Stands in for an output that was not produced, with the reason."""

    reason: str
