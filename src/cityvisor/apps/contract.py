"""The app contract: what a host (``cityvisor serve``, ``cityvisor demo``, a test) gives an app,
and what the app gives back.

An app is a package ``cityvisor.apps.<name>`` with a ``manifest.toml`` (its name, title and the
entity types it reads and writes) and an async ``setup(context: AppContext) -> RunningApp``.
It talks to the broker only through the ``ContextClient`` that ``context.client(tenant)``
returns (in-process in the server, over HTTP elsewhere), so the same app runs against any
NGSI-LD broker. ``docs/apps.md`` walks through writing one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cityvisor.client import ContextClient


@runtime_checkable
class RunningApp(Protocol):
    """A started app: its background work runs until ``close`` returns."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class AppContext:
    """What the host gives an app at setup.

    ``client``: a ContextClient bound to a tenant (None: the default tenant) and the core
    @context; the app derives clients for its Smart Data Models with ``with_context``.
    ``settings``: the host's configuration as plain values (an app reads its own keys,
    e.g. ``flood_config``). ``data_dir``: the folder where the app keeps its state (None: keep
    it in memory only).
    """

    name: str
    client: Callable[[str | None], ContextClient]
    settings: Mapping[str, Any] = field(default_factory=dict)
    data_dir: Path | None = None


#: how a host starts an app: ``await setup(context)``
AppSetup = Callable[[AppContext], Awaitable[RunningApp]]


@dataclass(frozen=True)
class Manifest:
    """An app's ``manifest.toml``: who it is and which entity types it reads and writes."""

    name: str
    title: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    @classmethod
    def load(cls, package: str) -> Manifest:
        """The manifest of app package ``package`` (e.g. ``cityvisor.apps.flood``)."""
        text = resources.files(package).joinpath("manifest.toml").read_text(encoding="utf-8")
        data = tomllib.loads(text)
        try:
            return cls(name=str(data["name"]), title=str(data["title"]),
                       reads=tuple(data.get("reads", ())), writes=tuple(data.get("writes", ())))
        except KeyError as missing:
            raise ValueError(f"{package}/manifest.toml: missing key {missing}") from None
