"""The composition root: builds the store, context registry, broker and token store from one
``Settings``. Nothing is opened at import time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cityvisor.apps.contract import AppContext, AppSetup, RunningApp
from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.entities import EntityBroker
from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.security.tokens import TokenStore
from cityvisor.store.sqlite import SqliteStore


@dataclass
class Services:
    settings: Settings
    store: SqliteStore
    contexts: ContextRegistry
    broker: EntityBroker
    tokens: TokenStore | None  # None: authentication is off (loopback only)
    subscriptions: Any = None  # cityvisor.notify.Notifications
    temporal: Any = None  # cityvisor.broker.temporal.TemporalBroker
    apps: list[RunningApp] = field(default_factory=list)  # running in-process apps
    #: the in-process apps to start, as (name, setup): one per name in ``settings.apps``, and
    #: any added by the caller (the demo's storm scenario)
    app_setups: list[tuple[str, AppSetup]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        settings.check()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(settings.tenants_dir, synchronous=settings.sqlite_synchronous)
        contexts = ContextRegistry(settings.system_db, allow_fetch=settings.allow_context_fetch)
        tokens = TokenStore(settings.system_db) if settings.auth else None
        services = cls(settings, store, contexts, EntityBroker(store, contexts), tokens)
        from cityvisor.broker.temporal import TemporalBroker

        services.temporal = TemporalBroker.install(
            store, services.broker, max_instances=settings.temporal_max_instances,
            retention_days=settings.temporal_retention_days,
            purge_interval_s=settings.temporal_purge_interval_s)
        from cityvisor.notify import install as install_notifications

        services.subscriptions = install_notifications(services)
        services.app_setups.extend((name, named_app_setup(name)) for name in settings.apps)
        return services

    async def start(self) -> None:
        """Start background work (notification delivery, retention); called by the server."""
        if self.subscriptions is not None:
            await self.subscriptions.start()
        if self.temporal is not None:
            self.temporal.start()  # retention purge
        for name, setup in self.app_setups:
            self.apps.append(await setup(self.app_context(name)))

    def app_context(self, name: str) -> AppContext:
        """What app ``name`` gets: in-process clients, the settings, ``<data_dir>/apps/<name>``."""
        return AppContext(
            name=name, client=lambda tenant: LocalContextClient(self.broker, tenant=tenant),
            settings=self.settings.model_dump(), data_dir=self.settings.data_dir / "apps" / name)

    async def close(self) -> None:
        for app in reversed(self.apps):  # in-process apps stop first (they write)
            await app.close()
        self.apps.clear()
        if self.temporal is not None:
            await self.temporal.stop()
        if self.subscriptions is not None:
            await self.subscriptions.close()
        await self.store.close()
        self.contexts.close()
        if self.tokens is not None:
            self.tokens.close()


def named_app_setup(name: str) -> AppSetup:
    """``cityvisor.apps.<name>.setup`` (setting ``apps``)."""
    import importlib

    try:
        module = importlib.import_module(f"cityvisor.apps.{name}")
    except ModuleNotFoundError as error:
        raise ValueError(f"setting apps: cannot start app {name!r} ({error})") from None
    setup = getattr(module, "setup", None)
    if setup is None:
        raise ValueError(f"setting apps: {name!r} is not an app (no setup)")
    return setup  # type: ignore[no-any-return]
