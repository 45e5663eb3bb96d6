"""The watchdog: an Alert for every watched device that has gone silent, closed when it
reports again. The smallest complete app, and the one to copy (``docs/apps.md``)."""

from __future__ import annotations

from pathlib import Path

from cityvisor.apps.contract import AppContext
from cityvisor.apps.watchdog.config import load_config
from cityvisor.apps.watchdog.coordinator import Watchdog


async def setup(context: AppContext) -> Watchdog:
    """Start the watchdog: its config from the setting ``watchdog_config`` (a TOML file; none:
    the defaults). It keeps no state of its own (its open alerts are in the broker)."""
    path = context.settings.get("watchdog_config")
    config = load_config(Path(path) if path is not None else None)
    watchdog = Watchdog(context.client(config.tenant), config)
    watchdog.start()
    return watchdog
