"""The composition root: builds the stores, the context registry, the entity, temporal and
subscription brokers, the entity maps and the token store from one ``Settings``, and wires the brokers' change
listeners. Nothing is opened at import time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from cityvisor.apps.contract import AppContext, AppSetup, RunningApp
from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.entities import EntityBroker
from cityvisor.broker.entity_maps import EntityMaps
from cityvisor.broker.temporal import TemporalBroker
from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.extras import requires_extra
from cityvisor.notify import Notifications
from cityvisor.notify.coherence import Coherence
from cityvisor.notify.feed import ChangeFeed, LocalFeed
from cityvisor.security.tokens import TokenStore
from cityvisor.store.base import Store, SystemStore
from cityvisor.store.sqlite import SqliteStore
from cityvisor.store.sqlite_system import SqliteSystemStore


@dataclass
class Services:
    settings: Settings
    store: Store
    system: SystemStore
    contexts: ContextRegistry
    broker: EntityBroker
    temporal: TemporalBroker
    subscriptions: Notifications
    tokens: TokenStore | None  # None: authentication is off (loopback only)
    entity_maps: EntityMaps
    apps: list[RunningApp] = field(default_factory=list)  # running in-process apps
    #: the in-process apps to start, as (name, setup): one per name in ``settings.apps``, and
    #: any added by the caller (the demo's storm scenario)
    app_setups: list[tuple[str, AppSetup]] = field(default_factory=list)
    #: the change feed between workers (LocalFeed: this worker alone)
    feed: ChangeFeed = field(default_factory=LocalFeed)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """The services on the embedded backend (SQLite files under ``data_dir``); a
        PostgreSQL configuration (``settings.db``) opens with ``await Services.open``."""
        settings.check()  # before any file is opened
        if settings.db is not None:
            raise ValueError("A PostgreSQL store is opened with 'await Services.open(settings)'")
        return cls.assemble(settings, open_store(settings), open_system_store(settings))

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        """The services on the configured backend: PostgreSQL when ``settings.db`` is set
        (after checking its schema version: ``DatabaseBehind`` asks for ``cityvisor db
        upgrade``), else the embedded SQLite files."""
        if settings.db is None:
            return cls.build(settings)
        settings.check()
        store, system = await open_postgres(settings)
        return cls.assemble(settings, store, system)

    @classmethod
    def assemble(cls, settings: Settings, store: Store, system: SystemStore) -> Services:
        """The services on the given backends (``Services`` then owns and closes them)."""
        settings.check()
        contexts = ContextRegistry(system, allow_fetch=settings.allow_context_fetch)
        broker = EntityBroker(store, contexts)
        temporal = TemporalBroker(
            store, broker, max_instances=settings.temporal_max_instances,
            retention_days=settings.temporal_retention_days,
            purge_interval_s=settings.temporal_purge_interval_s)
        notifications = Notifications(
            store, broker, retry_base_s=settings.notification_retry_base_s,
            retry_cap_s=settings.notification_retry_cap_s,
            timeout_s=settings.notification_timeout_s,
            concurrency=settings.notification_concurrency,
            batch_max=settings.notification_batch_max)
        # Every batch of entity changes derives, in its own transaction, the temporal history
        # rows and the notifications of the matching subscriptions (transactional outbox).
        broker.listeners.append(temporal.record)
        broker.listeners.append(notifications.manager.on_change)
        tokens = TokenStore(system) if settings.auth else None
        # the entity broker's clock, read at each use (tests replace it)
        entity_maps = EntityMaps(store, lambda: broker.clock(),
                                 lifetime_s=settings.entity_map_lifetime_s)
        services = cls(settings, store, system, contexts, broker, temporal, notifications,
                       tokens, entity_maps)
        services.app_setups.extend((name, named_app_setup(name)) for name in settings.apps)
        services.feed = open_feed(settings)
        Coherence(services.feed, broker, notifications.manager, contexts, tokens)
        return services

    async def start(self) -> None:
        """Start background work (notification delivery, retention); called by the server."""
        await self.feed.start()  # before the caches load: no change falls between
        await self.subscriptions.start()
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
        await self.feed.close()
        await self.temporal.stop()
        await self.subscriptions.close()
        await self.store.close()
        await self.system.close()


def open_store(settings: Settings) -> Store:
    """The tenants' store of the configuration: SQLite files under ``data_dir/tenants``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.tenants_dir, synchronous=settings.sqlite_synchronous)


async def open_postgres(settings: Settings) -> tuple[Store, SystemStore]:
    """The PostgreSQL store and system store of ``settings.db`` (one connection pool)."""
    assert settings.db is not None
    with requires_extra():
        from cityvisor.store.postgres_database import open_postgres as open_pool
    store, system = await open_pool(
        settings.db, min_size=min(settings.db_pool_min, settings.db_pool_max),
        max_size=settings.db_pool_max, namespace=settings.db_namespace)
    store.outbox_lease_s = settings.db_outbox_lease_s
    return store, system


def open_feed(settings: Settings) -> ChangeFeed:
    """The change feed of the configuration: NATS JetStream with ``nats_url``, else local."""
    if settings.nats_url is None:
        return LocalFeed()
    with requires_extra("the change feed on NATS (setting nats_url)"):
        from cityvisor.notify.nats import NatsFeed
    return NatsFeed(settings.nats_url, stream=settings.nats_stream)


def open_system_store(settings: Settings) -> SystemStore:
    """The system store (@contexts, tokens): ``data_dir/system.sqlite``."""
    return SqliteSystemStore(settings.system_db)


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
    return cast(AppSetup, setup)
