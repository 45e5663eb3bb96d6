"""Flood app benchmark: one full cycle for the Nîmes configuration, radar nowcast included.

    .venv/bin/python benchmarks/flood_cycle.py                  # 12 cycles, gauges-only tenant
    .venv/bin/python benchmarks/flood_cycle.py --full-city      # the whole demo city loaded

Loads the demo city's rain and water-level gauges (``--full-city``: all ~39,000 entities) into
a temporary broker, starts the October 2014 storm scenario (``../shared/data/flood/cance``; the
radar moved onto Nîmes), and times ``FloodApp.run_cycle`` in process (LocalContextClient): each cycle
reads the 50 gauges, reads the radar frames, nowcasts 6 h, steps and forecasts the 11
catchments, decides vigilance and writes 11 warning points (+ alerts). Cycles advance one
scenario hour each (the storm's heaviest hours), so every cycle steps the models and reads a
new radar frame. Target: <= 10 s per cycle on 2 cores.
Prints one JSON line on stdout (median and max of the timed cycles).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cityvisor.apps.flood.app import FloodApp
from cityvisor.apps.flood.config import load_config
from cityvisor.apps.flood.const import STORM_2014_LABEL
from cityvisor.apps.flood.storm_2014 import Storm2014Scenario
from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.sim.nimes import DemoCounts, build_city

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flood" / "cance"


async def main(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        services = Services.build(Settings(data_dir=Path(tmp) / "db", auth=False,
                                           allow_context_fetch=False))
        try:
            counts = DemoCounts() if args.full_city else DemoCounts(
                streetlights=1, cameras=1, weather_stations=1, seismometers=1, ev_stations=1,
                waste_containers=1, traffic_counters=1)
            loaded = 0
            for context, entities in build_city(counts):
                await services.broker.batch_upsert("nimes", context, entities)
                loaded += len(entities)
            config = load_config()
            t0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
            scenario = Storm2014Scenario(config, data_dir=args.data, acceleration=60)
            scenario.initial(t0)
            wall = [t0]
            client = LocalContextClient(services.broker, tenant="nimes")
            app = FloodApp(client, config, scenario.radar_source(),
                           scenario.clock(lambda: wall[0]), data_dir=Path(tmp) / "flood",
                           data_provider=STORM_2014_LABEL)
            durations: list[float] = []
            first = 0.0
            for k in range(args.cycles + 1):
                wall[0] = t0 + timedelta(minutes=args.first_hour + k)  # 1 scenario hour each
                for context, fragments in scenario.tick(wall[0]):
                    await services.broker.batch_merge("nimes", context, fragments)
                started = time.perf_counter()
                report = await app.run_cycle()
                elapsed = time.perf_counter() - started
                if k == 0:  # the first cycle also builds masks and reads 24 radar frames
                    first = elapsed
                else:
                    durations.append(elapsed)
                if report.errors:
                    print(f"cycle {k}: errors {report.errors}", file=sys.stderr)
            return {
                "benchmark": "flood_cycle", "entities_loaded": loaded,
                "catchments": len(config.catchments), "points": len(config.points),
                "cycles": len(durations),
                "cycle_median_s": round(statistics.median(durations), 4),
                "cycle_max_s": round(max(durations), 4),
                "first_cycle_s": round(first, 4), "target_s": 10.0,
            }
        finally:
            await services.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--first-hour", type=int, default=30,
                        help="scenario hour of the first cycle (30 = the night of 10 Oct)")
    parser.add_argument("--full-city", action="store_true")
    parser.add_argument("--data", type=Path, default=DATA)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
