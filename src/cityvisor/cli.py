"""The ``cityvisor`` command line (Typer + rich)."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Annotated

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
    import uvicorn

    from cityvisor.web import create_web_app

    asgi = create_web_app(settings, services)  # type: ignore[arg-type]
    # Objects alive at start-up (modules, contexts) never become garbage: keep them out of the
    # collector's scans, and collect less often (requests allocate many short-lived dicts).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    uvicorn.run(asgi, host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, server_header=False)


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


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port")] = 1026,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Data directory")] = Path("var/demo"),
    load_only: Annotated[bool, typer.Option("--load-only", help="Load the city, do not serve")] = False,
) -> None:
    """Load the Nîmes Métropole demo city and serve it, open, on 127.0.0.1."""
    from cityvisor.demo import DEMO_TENANT, load_demo_city
    from cityvisor.services import Services

    settings = _settings(None, host="127.0.0.1", port=port, data_dir=data_dir, auth=False)
    services = Services.build(settings)
    with Progress(TextColumn("Loading Nîmes Métropole"), BarColumn(), TextColumn(
            "{task.completed}/{task.total} entities"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("load", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        total, seconds = asyncio.run(load_demo_city(services, progress=progress))
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
        f"NGSI-LD API: {base}  (tenant header  NGSILD-Tenant: {DEMO_TENANT})",
        "Try:",
        f"  curl -s '{base}/types' {tenant}",
        f"  curl -s '{base}/entities?type=FloodMonitoring&limit=3&options=keyValues' "
        f"{tenant} {link('Environment')}",
        f"  curl -sg -i '{base}/entities?type=Streetlight&georel=near;maxDistance==200"
        f"&geometry=Point&coordinates=[4.3597,43.8349]&count=true&limit=0' {tenant} "
        f"{link('Streetlighting')}",
        "Stop with Ctrl-C. The demo runs without authentication, on loopback only.",
        "",
    ]
    # Plain text (not rich): long commands must stay on one line to be copied.
    print("\n".join(lines), file=sys.stderr, flush=True)
    _run(settings, Services.build(settings))


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
