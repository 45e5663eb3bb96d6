"""The composition root: builds the store, context registry, broker and token store from one
``Settings``. Nothing is opened at import time."""

from __future__ import annotations

from dataclasses import dataclass

from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.entities import EntityBroker
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

    @classmethod
    def build(cls, settings: Settings) -> Services:
        settings.check()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(settings.tenants_dir, synchronous=settings.sqlite_synchronous)
        contexts = ContextRegistry(settings.system_db, allow_fetch=settings.allow_context_fetch)
        tokens = TokenStore(settings.system_db) if settings.auth else None
        services = cls(settings, store, contexts, EntityBroker(store, contexts), tokens)
        # TEMPORAL WIRING
        # SUBSCRIPTION WIRING
        return services

    async def start(self) -> None:
        """Start background work (notification delivery, retention); called by the server."""
        # SUBSCRIPTION START

    async def close(self) -> None:
        # SUBSCRIPTION STOP
        await self.store.close()
        self.contexts.close()
        if self.tokens is not None:
            self.tokens.close()
