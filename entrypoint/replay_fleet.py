"""Replay of a staged synthetic fleet (`make up-cluster`): every `--every` seconds, each
farm's oldest staged export (one day of its turbines' records) moves into its landing
folder, as the farms' SCADA systems would deliver them; exits once all are delivered.
What is left to deliver is the staging folder itself, so a stopped replay resumes.

    uv run python entrypoint/replay_fleet.py --staging .cluster/staging --shared .cluster/shared --every 5
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from turbine_monitor.orchestration.cluster import deliver_next_exports


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--staging", type=Path, required=True, help="<staging>/<farm>/*.csv still to deliver")
    parser.add_argument("--shared", type=Path, required=True, help="<shared>/<farm>/landing/ receives them")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between deliveries")
    args = parser.parse_args(argv)
    stopping = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append(True))
    delivered = 0
    while not stopping:
        moved = deliver_next_exports(args.staging, args.shared)
        if not moved:
            print(f"Replay finished: {delivered} exports delivered.", flush=True)
            return
        delivered += moved
        deadline = time.monotonic() + args.every
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    print(f"Stopped after {delivered} exports; run again to resume.", flush=True)


if __name__ == "__main__":
    main()
