"""`cityvisor flood ...`: the flood app's commands (Typer sub-app)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from cityvisor.ngsild.time import as_utc

app = typer.Typer(help="Flood early warning: forecasts, vigilance and alerts for the cadereaux",
                  no_args_is_help=True)


def _time(text: str) -> datetime:
    """An ISO 8601 date or date-time from the command line, in UTC (UTC if it has no offset)."""
    return as_utc(datetime.fromisoformat(text))


def _thresholds(values: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for value in values:
        code, sep, m3s = value.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected CODE=M3S, got {value!r}", param_hint="--threshold")
        try:
            out[code.strip()] = float(m3s)
        except ValueError:
            raise typer.BadParameter(f"not a number: {m3s!r}", param_hint="--threshold") from None
    return out


TimeOpt = Annotated[str, typer.Option(help="ISO-8601 time, UTC if no offset")]


@app.command()
def evaluate(
    dataset: Annotated[Path, typer.Option(help="Data set (layout of flood/cance)", exists=True,
                                          file_okay=False)],
    train_from: Annotated[str, typer.Option("--train-from", help="Training start (UTC)")],
    train_until: Annotated[str, typer.Option("--train-until", help="Training end (UTC)")],
    test_from: Annotated[str, typer.Option("--test-from", help="First issue time (UTC)")],
    test_until: Annotated[str, typer.Option("--test-until", help="Last issue time (UTC)")],
    forecasts_out: Annotated[Path, typer.Option("--forecasts-out", help="Forecasts CSV")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores here")] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="Warning threshold CODE=M3S (repeatable)")] = None,
    max_evals: Annotated[int, typer.Option("--max-evals", min=200,
                                           help="Calibration budget per gauge")] = 800,
    refine_evals: Annotated[int, typer.Option(
        "--refine-evals", min=0,
        help="Model runs refining the parameters in forecast mode (0 = none)")] = 0,
) -> None:
    """Train on the training window, back-test the test window as if live, score it."""
    try:
        from cityvisor.apps.flood.evaluation import run_evaluation
    except ImportError as error:  # scipy/tifffile come with the `flood` extra
        typer.echo(f"error: {error}; install the flood extra: pip install -e '.[flood]'",
                   err=True)
        raise typer.Exit(2) from None

    started = time.perf_counter()
    try:
        result = run_evaluation(
            dataset, _time(train_from), _time(train_until), _time(test_from),
            _time(test_until), forecasts_out, thresholds=_thresholds(threshold or []),
            max_evals=max_evals, refine_evals=refine_evals,
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    result["runtime_s"] = round(time.perf_counter() - started, 2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"{result['issue_times']} issue times written to {forecasts_out} "
               f"in {result['runtime_s']} s", err=True)


# --- `cityvisor flood run`: the app as its own process -------------------------------------------


@app.command()
def run(
    broker: Annotated[str, typer.Option(help="NGSI-LD broker base URL, e.g. http://127.0.0.1:1026")],
    tenant: Annotated[str | None, typer.Option(help="Tenant (default: the config's)")] = None,
    config: Annotated[Path | None, typer.Option(
        help="Flood config TOML (default: bundled Nîmes)", exists=True, dir_okay=False)] = None,
    token: Annotated[str | None, typer.Option(envvar="CITYVISOR_TOKEN", help="Bearer token")] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the app keeps its state")]
    = Path("var/flood"),
    radar_dir: Annotated[Path | None, typer.Option(
        "--radar-dir", help="Radar GeoTIFFs in the Cance layout (optional)", exists=True,
        file_okay=False)] = None,
    once: Annotated[bool, typer.Option("--once", help="Run one cycle, print it, exit")] = False,
) -> None:
    """Run the flood early-warning app against a broker (HTTP ContextClient)."""
    import asyncio
    import signal

    from cityvisor.apps.flood.app import FloodApp
    from cityvisor.apps.flood.config import FloodConfigError, load_config
    from cityvisor.apps.flood.sources import FileRadarSource
    from cityvisor.client import HttpContextClient

    try:
        flood_config = load_config(config)
    except FloodConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None

    async def main() -> None:
        client = HttpContextClient(broker, tenant=tenant or flood_config.tenant, token=token)
        radar = FileRadarSource(radar_dir) if radar_dir is not None else None
        flood = FloodApp(client, flood_config, radar, data_dir=data_dir)
        try:
            if once:
                report = await flood.run_cycle()
                typer.echo(json.dumps(report.summary(), ensure_ascii=False))
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            typer.echo(f"flood app: {len(flood_config.points)} warning points, one cycle every "
                       f"{flood_config.cycle_minutes:g} min against {broker}", err=True)
            await flood.run_forever(stop)
        finally:
            await client.close()

    asyncio.run(main())
