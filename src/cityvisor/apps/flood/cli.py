"""`cityvisor flood ...`: the flood app's commands (Typer sub-app)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Flood early warning (issue 4)", no_args_is_help=True)


def _time(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


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
) -> None:
    """Calibrate on the training window, replay the test window as if live, score it."""
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
            max_evals=max_evals,
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
