"""The ``cityvisor`` command line (Typer + rich)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cityvisor import __version__
from cityvisor.apps.flood.cli import app as flood_app
from cityvisor.config import Settings

app = typer.Typer(help="cityvisor: open, self-hosted urban hypervisor (NGSI-LD)",
                  no_args_is_help=True, add_completion=False)
token_app = typer.Typer(help="Create, list and revoke API bearer tokens", no_args_is_help=True)
context_app = typer.Typer(help="Manage cached JSON-LD @contexts", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(context_app, name="context")
retention_app = typer.Typer(help="Retention of the temporal history", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
app.add_typer(flood_app, name="flood")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file",
                                                exists=True, dir_okay=False)]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory")]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        settings = Settings.load(config, **overrides)
        settings.check()
        return settings
    except ValueError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None


def _run(settings: Settings, services: object | None = None) -> None:
    from cityvisor.web import create_web_app, serve

    serve(settings, create_web_app(settings, services))  # type: ignore[arg-type]


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 1026)")] = None,
    data_dir: DataDirOpt = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Run open (loopback only)")] = False,
) -> None:
    """Run the NGSI-LD broker. Every request needs a bearer token unless --no-auth on loopback."""
    settings = _settings(config, host=host, port=port, data_dir=data_dir,
                         auth=False if no_auth else None)
    mode = "authentication required" if settings.auth else "[yellow]open (loopback only)[/]"
    err.print(f"cityvisor {__version__}: NGSI-LD API on "
              f"http://{settings.host}:{settings.port}/ngsi-ld/v1 ({mode}); "
              f"data in {settings.data_dir}")
    _run(settings)


# --- demo command: owned by the living-demo work (issue 5 item 3); see docs/demo.md ---
@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port")] = 1026,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory")] = Path("var/demo"),
    load_only: Annotated[bool, typer.Option("--load-only", help="Load the city, do not serve")] = False,
    no_live: Annotated[bool, typer.Option("--no-live", help="Serve a static city (no simulators)")] = False,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second", min=0.01,
                                         max=3600)] = 1.0,
    start: Annotated[datetime | None, typer.Option(
        help="Simulated start time (ISO, UTC unless an offset is given); default: now",
        metavar="ISO-TIME",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M%z",
                 "%Y-%m-%dT%H:%M:%S%z"])] = None,
    report_every: Annotated[float, typer.Option(
        help="Seconds between two printed rate lines (0: never)", min=0)] = 60.0,
    scenario: Annotated[str, typer.Option(
        help="flood-2014: replay the October 2014 storm over Nîmes with the flood app "
        "(needs the Cance data, see --replay-data); none: no scenario")] = "flood-2014",
    replay_data: Annotated[Path, typer.Option(
        "--replay-data", help="The Cance data set of the flood replay")] = Path(
        "../shared/data/flood/cance"),
    weather: Annotated[bool, typer.Option(
        "--weather/--no-weather", help="Simulated weather for every commune of Occitanie "
        "(the public portal's data)")] = True,
) -> None:
    """Load the Nîmes Métropole demo city and serve it, open, on 127.0.0.1, kept alive by
    simulators (streetlights, traffic, EV charging, waste, seismometers) unless --no-live."""
    from cityvisor.demo import (
        DEMO_TENANT,
        demo_simulators,
        describe,
        initial_state,
        live_city,
        load_demo_city,
        print_report,
        serve_demo,
        split_after_start,
    )
    from cityvisor.services import Services
    from cityvisor.sim.live import SimulatedClock
    from cityvisor.sim.nimes import DemoCounts, build_city

    settings = _settings(None, host="127.0.0.1", port=port, data_dir=data_dir, auth=False)
    if settings.temporal_retention_days is None and not no_live:
        # ~2 GB of temporal history a day at real speed: keep one day unless configured.
        settings = settings.model_copy(update={"temporal_retention_days": 1})
    now = (start if start is not None else datetime.now(UTC))
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    # Without --start the simulated clock runs from now, load included (at --speed 1 it is the
    # wall clock); with --start it starts when the server does, at the time asked for.
    clock = SimulatedClock(speed, start=now) if start is None else None
    if scenario not in ("flood-2014", "none"):
        err.print(f"[red]error:[/] --scenario must be flood-2014 or none, got {scenario!r}")
        raise typer.Exit(2)
    city = build_city(DemoCounts(), observed_at=now)
    extra, replay = _demo_extras(no_live, weather, scenario, replay_data)
    simulators = [] if no_live else demo_simulators(city, extra=extra)
    initial = initial_state(simulators, now, warn=lambda line: err.print(f"[yellow]{line}[/]"))
    # Forecasts are written by the live city once the server is up (shorter start-up); with
    # --load-only there is no server: everything is loaded.
    initial, after_start = (initial, []) if load_only else split_after_start(initial)
    services = Services.build(settings)
    with Progress(TextColumn("Loading Nîmes Métropole"), BarColumn(), TextColumn(
            "{task.completed}/{task.total} entities"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("load", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        total, seconds = asyncio.run(load_demo_city(services, progress=progress, city=city,
                                                    initial=initial, now=now))
    asyncio.run(services.store.close())
    base = f"http://127.0.0.1:{port}/ngsi-ld/v1"
    err.print(f"[green]Loaded {total} entities into tenant '{DEMO_TENANT}' in {seconds:.1f} s[/]")
    if load_only:
        return
    def link(domain: str) -> str:
        return ("-H 'Link: <https://raw.githubusercontent.com/smart-data-models/"
                f"dataModel.{domain}/master/context.jsonld>; "
                "rel=\"http://www.w3.org/ns/json-ld#context\"'")

    tenant = f"-H 'NGSILD-Tenant: {DEMO_TENANT}'"
    lines = [
        "",
        f"Operator console: http://127.0.0.1:{port}/console/  (demo: type your name)",
        f"Public portal:    http://127.0.0.1:{port}/",
        f"NGSI-LD API: {base}  (tenant header  NGSILD-Tenant: {DEMO_TENANT})",
        "Try:",
        f"  curl -s '{base}/types' {tenant}",
        f"  curl -s '{base}/entities?type=FloodMonitoring&limit=3&options=keyValues' "
        f"{tenant} {link('Environment')}",
        f"  curl -sg -i '{base}/entities?type=Streetlight&georel=near;maxDistance==200"
        f"&geometry=Point&coordinates=[4.3597,43.8349]&count=true&limit=0' {tenant} "
        f"{link('Streetlighting')}",
        f"  curl -s '{base}/entities?type=Streetlight&q=powerState==%22low%22&count=true&limit=0'"
        f" -i {tenant} {link('Streetlighting')}",
        "Stop with Ctrl-C. The demo runs without authentication, on loopback only.",
        "",
    ]
    if simulators:
        later = sum(len(entities) for _, entities in after_start)
        lines[-2:-2] = describe(simulators, speed) + [
            f"  simulated start {now:%Y-%m-%d %H:%M:%S} UTC"
            + (f"; rates printed every {report_every:g} s" if report_every else ""),
            *([f"  {later} more entities (weather forecasts) are written in the first seconds"]
              if later else [])]
    else:
        lines[-2:-2] = ["Static city (--no-live): nothing changes unless you write."]
    # Plain text (not rich): long commands must stay on one line to be copied.
    print("\n".join(lines), file=sys.stderr, flush=True)
    serving = Services.build(settings)
    if replay is not None:
        from cityvisor.apps.flood.app import start_in_server

        serving.app_factories.append(lambda services: start_in_server(services, replay=replay))
    live = None
    if simulators:
        live = live_city(serving, simulators, clock or SimulatedClock(speed, start=now), since=now,
                         report=print_report, report_every_s=report_every, pending=after_start)
    serve_demo(settings, serving, live)
# --- end of the demo command ---


def _demo_extras(no_live: bool, weather: bool, scenario: str,
                 replay_data: Path) -> tuple[list[Any], Any]:
    """The demo's optional simulators: Occitanie weather, the flood replay (and the replay)."""
    if no_live:
        return [], None
    extra: list[Any] = []
    if weather:
        from cityvisor.sim.weather import OccitanieWeather

        extra.append(OccitanieWeather(forecast_days=3))
    replay = None
    if scenario == "flood-2014":
        from cityvisor.apps.flood.config import load_config
        from cityvisor.apps.flood.replay import Flood2014Replay, ReplayDataMissing

        try:
            replay = Flood2014Replay(load_config(None), data_dir=replay_data)
        except ReplayDataMissing as error:
            err.print(f"[yellow]No flood replay: {error}[/]")
        else:
            extra.append(replay)
    return extra, replay



@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="reader | writer | admin")],
    tenant: Annotated[str, typer.Option(help="Tenant name, '*' for all; default: the default tenant")] = "",
    name: Annotated[str, typer.Option(help="A label for the token")] = "",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a token. It is printed once and stored only as a hash."""
    from cityvisor.security.tokens import TokenStore

    settings = _settings(config, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = TokenStore(settings.system_db)
    try:
        token, info = store.create(role, tenant, name)
    except ValueError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    err.print(f"Token {info.token_id} (role {info.role}, tenant {info.tenant or '(default)'}); "
              "shown once, keep it safe:")
    print(token)


@token_app.command("list")
def token_list(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """List tokens (never their secrets)."""
    from cityvisor.security.tokens import TokenStore

    settings = _settings(config, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    table = Table("id", "role", "tenant", "name", "created", "revoked")
    for info in TokenStore(settings.system_db).list():
        table.add_row(info.token_id, info.role, info.tenant or "(default)", info.name,
                      info.created_at, info.revoked_at or "")
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: str, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Revoke a token by id; servers refuse it within seconds."""
    from cityvisor.security.tokens import TokenStore

    settings = _settings(config, data_dir=data_dir)
    if not TokenStore(settings.system_db).revoke(token_id):
        err.print(f"[red]error:[/] no active token {token_id}")
        raise typer.Exit(1)
    err.print(f"Token {token_id} revoked")


@context_app.command("preload")
def context_preload(url: str, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
                    config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Cache the @context FILE under URL, so that the broker never fetches it."""
    from cityvisor.broker.contexts import ContextRegistry
    from cityvisor.ngsild.errors import NgsiLdError

    settings = _settings(config, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        ContextRegistry(settings.system_db).preload(url, document)
    except (ValueError, NgsiLdError) as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    err.print(f"Cached {url}")


@retention_app.command("set")
def retention_set(
    days: Annotated[int | None, typer.Option("--days", min=1, help="Days kept")] = None,
    tenant: Annotated[str, typer.Option(help="Tenant; default: the default tenant")] = "",
    attribute: Annotated[str, typer.Option(help="Attribute (term or IRI); default: all")] = "",
    clear: Annotated[bool, typer.Option("--clear", help="Remove the setting")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Keep a tenant's (or one attribute's) temporal history for --days days."""
    from cityvisor.broker.temporal import expand_attribute, tenant_database
    from cityvisor.ngsild.errors import NgsiLdError
    from cityvisor.store.sqlite_temporal import set_retention

    if (days is None) == (not clear):
        err.print("[red]error:[/] give --days N or --clear")
        raise typer.Exit(2)
    settings = _settings(config, data_dir=data_dir)
    try:
        iri = expand_attribute(attribute) if attribute else ""
        conn = tenant_database(settings.tenants_dir, tenant or None)
    except NgsiLdError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    set_retention(conn, iri, None if clear else days)
    conn.close()
    err.print(f"Retention of {iri or 'every attribute'} in tenant {tenant or '(default)'}: "
              f"{'default' if clear else f'{days} days'}")


@retention_app.command("list")
def retention_list(
    tenant: Annotated[str, typer.Option(help="Tenant; default: the default tenant")] = "",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List the retention settings of a tenant (and the global default)."""
    from cityvisor.broker.temporal import tenant_database
    from cityvisor.ngsild.errors import NgsiLdError
    from cityvisor.store.sqlite_temporal import retention_settings

    settings = _settings(config, data_dir=data_dir)
    try:
        conn = tenant_database(settings.tenants_dir, tenant or None)
    except NgsiLdError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    table = Table("attribute", "days")
    table.add_row("(global default)", str(settings.temporal_retention_days or "forever"))
    for attr, days in retention_settings(conn).items():
        table.add_row(attr or "(every attribute)", str(days))
    conn.close()
    console.print(table)


def main() -> None:
    app()
