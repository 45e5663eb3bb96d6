"""The ``cityvisor`` command line (Typer + rich): it parses options and calls the modules that
do the work (``demo.run_demo``, ``web.serve``...)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cityvisor import __version__
from cityvisor.apps.flood.cli import app as flood_app
from cityvisor.config import Settings
from cityvisor.extras import (
    MissingExtra,
    extra_of,
    require_app_extras,
    require_extra,
    requires_extra,
)

if TYPE_CHECKING:
    from cityvisor.store.base import SystemStore

T = TypeVar("T")

app = typer.Typer(help="cityvisor: open, self-hosted urban hypervisor (NGSI-LD)",
                  no_args_is_help=True, add_completion=False)
token_app = typer.Typer(help="Create, list and revoke API bearer tokens", no_args_is_help=True)
context_app = typer.Typer(help="Manage cached JSON-LD @contexts", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(context_app, name="context")
retention_app = typer.Typer(help="Retention of the temporal history", no_args_is_help=True)
app.add_typer(retention_app, name="retention")
app.add_typer(flood_app, name="flood")
db_app = typer.Typer(help="The PostgreSQL store: create or migrate its schemas, check them",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file",
                                                exists=True, dir_okay=False)]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory")]
DbOpt = Annotated[str | None, typer.Option(
    "--db", metavar="URL", help="PostgreSQL store, postgresql://user@host:5432/dbname (default: the "
    "embedded SQLite files of --data-dir)")]


def _with_system(settings: Settings, action: Callable[[SystemStore], Awaitable[T]]) -> T:
    """Run ``action`` on the system store of ``settings`` (SQLite or PostgreSQL), then close
    it."""
    from cityvisor.services import open_postgres, open_system_store

    async def run() -> T:
        if settings.db is None:
            system = open_system_store(settings)
            try:
                return await action(system)
            finally:
                await system.close()
        store, system = await open_postgres(settings)
        try:
            return await action(system)
        finally:
            await store.close()  # closes the pool both share

    return _database_call(settings, run)


def _database_call(settings: Settings, run: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(run())``, with one clear line (exit 2) when the configured PostgreSQL
    cannot be reached or its schemas are behind this version."""
    try:
        return asyncio.run(run())  # type: ignore[arg-type]
    except MissingExtra as error:
        err.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    except (OSError, TimeoutError) as error:
        err.print(f"[red]error:[/] cannot reach the database {escape(_safe_url(settings.db))}: "
                  f"{escape(str(error))}")
        raise typer.Exit(2) from None
    except Exception as error:
        from cityvisor.store.postgres_errors import refused_by_database

        if not refused_by_database(error):
            raise
        err.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None


def _safe_url(url: str | None) -> str:
    """A database URL without its password."""
    from urllib.parse import urlsplit

    if not url:
        return "(none)"
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        settings = Settings.load(config, **overrides)
        settings.check()
        return settings
    except ValueError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None


def _run(settings: Settings, services: object | None = None, workers: int = 1) -> None:
    from cityvisor.web import create_web_app, serve

    if workers > 1:
        serve(settings, workers=workers)
        return
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
    apps: Annotated[list[str] | None, typer.Option(
        "--apps", metavar="NAME", help="An app to run in the server, e.g. flood (repeatable; default: the "
        "setting apps)")] = None,
    db: DbOpt = None,
    nats: Annotated[str | None, typer.Option(
        "--nats", metavar="URL", help="NATS JetStream server of the change feed between "
        "workers sharing one database, e.g. nats://127.0.0.1:4222")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=256, help="Worker processes on the one port (needs --db: each "
        "has its own connection pool of db_pool_max)")] = 1,
) -> None:
    """Run the NGSI-LD broker. Every request needs a bearer token unless --no-auth on loopback."""
    settings = _settings(config, host=host, port=port, data_dir=data_dir,
                         auth=False if no_auth else None, apps=apps or None, db=db,
                         nats_url=nats)
    if workers > 1 and settings.db is None:
        err.print(f"[red]error:[/] --workers {workers} needs --db postgresql://... (or "
                  "CITYVISOR_DB): the embedded SQLite store serves one process")
        raise typer.Exit(2)
    if workers > 1 and settings.apps:
        err.print(f"[red]error:[/] in-process apps ({', '.join(settings.apps)}) would run once "
                  f"per worker: run them in one more 'cityvisor serve --apps ...' process on the "
                  "same database, not with --workers")
        raise typer.Exit(2)
    require_app_extras(settings.apps)  # before start-up: one line, not a traceback in its log
    if settings.nats_url is not None:
        require_extra("nats")
    if settings.db is not None:
        _check_database(settings)
    mode = "authentication required" if settings.auth else "[yellow]open (loopback only)[/]"
    where = (f"data in PostgreSQL {_safe_url(settings.db)}" if settings.db
             else f"data in {settings.data_dir}")
    processes = f"; {workers} workers" if workers > 1 else ""
    err.print(f"cityvisor {__version__}: NGSI-LD API on "
              f"http://{settings.host}:{settings.port}/ngsi-ld/v1 ({mode}); {where}{processes}")
    if workers > 1 and settings.nats_url is None:
        err.print("[yellow]warning:[/] several workers without --nats: a subscription, "
                  "@context or token changed through one worker reaches the others only when "
                  "they restart (docs/workers.md)")
    _run(settings, workers=workers)


def _database_step(settings: Settings, step: str) -> None:
    """Run ``postgres_database.<step>`` (``check`` or ``upgrade``) on the configured database,
    with one clear line when it fails."""

    async def run() -> None:
        with requires_extra():
            from cityvisor.store import postgres_database
        assert settings.db is not None
        await getattr(postgres_database, step)(settings.db, namespace=settings.db_namespace)

    _database_call(settings, run)


def _check_database(settings: Settings) -> None:
    """Before start-up: the database answers and its schemas are current (else one line)."""
    _database_step(settings, "check")


def _database_settings(config: Path | None, db: str | None) -> Settings:
    settings = _settings(config, db=db)
    if settings.db is None:
        err.print("[red]error:[/] no database: give --db postgresql://... (or CITYVISOR_DB)")
        raise typer.Exit(2)
    return settings


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Create the PostgreSQL schemas, or migrate them to this version (safe to rerun)."""
    settings = _database_settings(config, db)
    _database_step(settings, "upgrade")
    err.print(f"Database {_safe_url(settings.db)} is up to date")


@db_app.command("check")
def db_check(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Exit 0 if the PostgreSQL schemas are current, 2 with the reason otherwise."""
    settings = _database_settings(config, db)
    _database_step(settings, "check")
    err.print(f"Database {_safe_url(settings.db)} is up to date")


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
        "(needs the Cance data, see --replay-data, and the flood extra); none: no scenario")
    ] = "flood-2014",
    replay_data: Annotated[Path, typer.Option(
        "--replay-data", help="The Cance data set of the flood replay")] = Path(
        "../shared/data/flood/cance"),
    weather: Annotated[bool, typer.Option(
        "--weather/--no-weather", help="Simulated weather for every commune of Occitanie "
        "(the public portal's data)")] = True,
) -> None:
    """Load the Nîmes Métropole demo city and serve it, open, on 127.0.0.1.

    Unless --no-live, simulators keep the city alive (docs/demo.md lists them)."""
    from cityvisor.demo import SCENARIOS, DemoOptions, run_demo

    if scenario not in SCENARIOS:
        err.print(f"[red]error:[/] --scenario must be {' or '.join(SCENARIOS)}, got {scenario!r}")
        raise typer.Exit(2)
    settings = _settings(None, host="127.0.0.1", port=port, data_dir=data_dir, auth=False)
    run_demo(settings, DemoOptions(
        port=port, data_dir=data_dir, load_only=load_only, live=not no_live, speed=speed,
        start=start, report_every_s=report_every, scenario=scenario, replay_data=replay_data,
        weather=weather))


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="reader | writer | admin")],
    tenant: Annotated[str, typer.Option(help="Tenant name, '*' for all; default: the default tenant")] = "",
    name: Annotated[str, typer.Option(help="A label for the token")] = "",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Create a token. It is printed once and stored only as a hash."""
    from cityvisor.security.tokens import TokenStore

    settings = _settings(config, data_dir=data_dir, db=db)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        token, info = _with_system(
            settings, lambda system: TokenStore(system).create(role, tenant, name))
    except ValueError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    err.print(f"Token {info.token_id} (role {info.role}, tenant {info.tenant or '(default)'}); "
              "shown once, keep it safe:")
    print(token)


@token_app.command("list")
def token_list(config: ConfigOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None) -> None:
    """List tokens (never their secrets)."""
    from cityvisor.security.tokens import TokenStore

    settings = _settings(config, data_dir=data_dir, db=db)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    table = Table("id", "role", "tenant", "name", "created", "revoked")
    for info in _with_system(settings, lambda system: TokenStore(system).list()):
        table.add_row(info.token_id, info.role, info.tenant or "(default)", info.name,
                      info.created_at, info.revoked_at or "")
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: str, config: ConfigOpt = None, data_dir: DataDirOpt = None,
                 db: DbOpt = None) -> None:
    """Revoke a token by id; servers refuse it within seconds."""
    from cityvisor.security.tokens import TokenStore

    settings = _settings(config, data_dir=data_dir, db=db)
    if not _with_system(settings, lambda system: TokenStore(system).revoke(token_id)):
        err.print(f"[red]error:[/] no active token {token_id}")
        raise typer.Exit(1)
    err.print(f"Token {token_id} revoked")


@context_app.command("preload")
def context_preload(url: str, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
                    config: ConfigOpt = None, data_dir: DataDirOpt = None,
                    db: DbOpt = None) -> None:
    """Cache the @context FILE under URL, so that the broker never fetches it."""
    from cityvisor.broker.contexts import ContextRegistry
    from cityvisor.ngsild.errors import NgsiLdError

    settings = _settings(config, data_dir=data_dir, db=db)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        _with_system(settings, lambda system: ContextRegistry(system).preload(url, document))
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
    from cityvisor.broker.temporal import expand_attribute
    from cityvisor.ngsild.errors import NgsiLdError
    from cityvisor.ngsild.tenants import check_tenant
    from cityvisor.services import open_store

    if (days is None) == (not clear):
        err.print("[red]error:[/] give --days N or --clear")
        raise typer.Exit(2)
    settings = _settings(config, data_dir=data_dir)
    try:
        iri = expand_attribute(attribute) if attribute else ""
        check_tenant(tenant or None)
    except NgsiLdError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None

    async def update() -> None:
        store = open_store(settings)
        try:
            await store.set_retention(tenant or None, iri, None if clear else days)
        finally:
            await store.close()

    asyncio.run(update())
    err.print(f"Retention of {iri or 'every attribute'} in tenant {tenant or '(default)'}: "
              f"{'default' if clear else f'{days} days'}")


@retention_app.command("list")
def retention_list(
    tenant: Annotated[str, typer.Option(help="Tenant; default: the default tenant")] = "",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List the retention settings of a tenant (and the global default)."""
    from cityvisor.ngsild.errors import NgsiLdError
    from cityvisor.ngsild.tenants import check_tenant
    from cityvisor.services import open_store

    settings = _settings(config, data_dir=data_dir)
    try:
        check_tenant(tenant or None)
    except NgsiLdError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None

    async def read() -> dict[str, int]:
        store = open_store(settings)
        try:
            return await store.retention(tenant or None)
        finally:
            await store.close()

    table = Table("attribute", "days")
    table.add_row("(global default)", str(settings.temporal_retention_days or "forever"))
    for attr, days in asyncio.run(read()).items():
        table.add_row(attr or "(every attribute)", str(days))
    console.print(table)


def main() -> None:
    """The ``cityvisor`` console script: a feature used without its optional dependencies
    stops with one line naming the extra to install."""
    try:
        app()
    except MissingExtra as error:
        _missing_extra(error)
    except ImportError as error:
        missing = extra_of(error)
        if missing is None:
            raise
        _missing_extra(missing)


def _missing_extra(error: MissingExtra) -> None:
    err.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
    sys.exit(2)
