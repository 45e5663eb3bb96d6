"""The watchdog's configuration: which entity types to watch, how long a silence is allowed.

A TOML file (setting ``watchdog_config``; none: the defaults below), validated by pydantic:

>>> parse_config({"max_silence_minutes": 30, "watch": [{"type": "Device"}]}).max_silence
datetime.timedelta(seconds=1800)
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

NGSI_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,255}$"


class WatchdogConfigError(ValueError):
    """The watchdog configuration is invalid; the message lists every problem."""


class Watched(BaseModel):
    """One entity type to watch, and the Smart Data Models domain whose @context defines it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(pattern=NGSI_NAME)
    domain: str = Field("Device", pattern=NGSI_NAME)


class WatchdogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant: str | None = Field(None, description="Tenant watched (None: the default tenant)")
    watch: list[Watched] = Field(default_factory=lambda: [Watched(type="Device")], min_length=1)
    max_silence_minutes: float = Field(60.0, gt=0, description="Longer without data: silent")
    interval_seconds: float = Field(60.0, ge=1, description="Seconds between two checks")

    @property
    def max_silence(self) -> timedelta:
        return timedelta(minutes=self.max_silence_minutes)


def parse_config(data: dict[str, Any], source: str = "configuration") -> WatchdogConfig:
    """Validate a mapping; :class:`WatchdogConfigError` lists every problem."""
    try:
        return WatchdogConfig.model_validate(data)
    except ValidationError as error:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                 for e in error.errors()]
        raise WatchdogConfigError(f"invalid watchdog {source}:\n" + "\n".join(lines)) from None


def load_config(path: Path | None) -> WatchdogConfig:
    """Read a TOML configuration (None: the defaults)."""
    if path is None:
        return WatchdogConfig()
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise WatchdogConfigError(f"cannot read watchdog configuration {path}: {error}") from None
    return parse_config(data, f"configuration {path}")
