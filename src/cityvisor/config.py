"""One ``Settings`` object for the whole process: env vars ``CITYVISOR_*`` and an optional TOML file."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback_host(host: str) -> bool:
    """A loopback name or address (``localhost``, ``127.0.0.1``, ``::1``...)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Configuration of ``cityvisor serve`` (and of ``demo``, which sets its own defaults)."""

    model_config = SettingsConfigDict(env_prefix="CITYVISOR_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address to bind")
    port: int = Field(1026, ge=0, le=65535, description="HTTP port (FIWARE convention: 1026)")
    data_dir: Path = Field(Path("var/cityvisor"), description="Where databases are kept")
    db: str | None = Field(
        None, pattern=r"^postgres(ql)?://", description="PostgreSQL URL of the store "
        "(postgresql://user@host:5432/dbname); unset: the embedded SQLite files under data_dir")
    db_namespace: str = Field("ngsild", pattern=r"^[a-z][a-z0-9_]{0,20}$",
                              description="Prefix of the PostgreSQL schemas (several brokers "
                              "may share one database)")
    db_pool_min: int = Field(2, ge=1, le=1000, description="PostgreSQL connections kept open")
    db_pool_max: int = Field(10, ge=1, le=1000, description="Most PostgreSQL connections")
    db_outbox_lease_s: float = Field(
        60.0, ge=1, le=3600, description="Seconds a worker holds the notifications it took "
        "(renewed while it works on them); those of a worker that died go to another after this")
    auth: bool = Field(True, description="Require bearer tokens; false only on loopback")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body")
    allow_context_fetch: bool = Field(True, description="Fetch unknown @context URLs once")
    sqlite_synchronous: str = Field("NORMAL", pattern="^(NORMAL|FULL|normal|full)$",
                                    description="NORMAL survives a killed process; FULL power loss")
    public_url: str | None = Field(None, description="Base URL clients use (hosted @contexts)")
    log_level: str = Field("warning", description="uvicorn log level")
    config_file: Path | None = Field(None, description="TOML file read before env vars")
    temporal_retention_days: int | None = Field(
        None, ge=1, description="Default days of temporal history kept (None: forever)")
    temporal_purge_interval_s: float = Field(
        3600.0, gt=0, description="Seconds between two purges of expired temporal history")
    temporal_max_instances: int = Field(
        1000, ge=1, description="Instances per attribute in one temporal answer (then 206)")
    entity_map_lifetime_s: float = Field(
        3600.0, gt=0, description="Seconds an entity map lives (clause 5.2.39; the longest "
        "an update may ask for)")
    notification_retry_base_s: float = Field(0.5, gt=0, description="First retry delay of a failed notification")
    notification_retry_cap_s: float = Field(30.0, gt=0, description="Longest retry delay")
    notification_timeout_s: float = Field(5.0, gt=0, description="Notification request timeout")
    notification_concurrency: int = Field(8, ge=1, le=256, description="Deliveries in flight per endpoint")
    notification_batch_max: int = Field(
        100, ge=1, le=10_000, description="Most queued changes of one subscription sent as one "
        "notification when deliveries fall behind (1: one notification per change)")
    # several workers on one database: the change feed between them (docs/workers.md)
    nats_url: str | None = Field(
        None, description="NATS JetStream server of the change feed between workers, e.g. "
        "nats://127.0.0.1:4222 (None: one worker alone)")
    nats_stream: str = Field("CITYVISOR", pattern="^[A-Za-z0-9_-]{1,64}$",
                             description="JetStream stream of the change feed (subjects: its "
                             "name in lower case, then '.>')")
    # in-process apps, and the flood app's settings
    apps: list[str] = Field(default_factory=list, description="Apps run in-process, e.g. flood")
    flood_config: Path | None = Field(None, description="Flood app TOML (default: bundled Nîmes)")
    flood_radar_dir: Path | None = Field(None, description="Radar GeoTIFFs (Cance layout)")
    # the public portal and the console map
    public_tenant: str = Field("nimes", description="Tenant whose public data the portal shows")
    console_tile_url: str | None = Field(
        None, description="Optional raster tile URL template for the console map ({z}/{x}/{y}); "
        "off: no network")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Settings from (lowest first) defaults, the TOML file, env vars, explicit overrides."""
        values: dict[str, Any] = {}
        if config_file is not None:
            toml = TomlConfigSettingsSource(cls, toml_file=config_file)
            values.update(toml())
        env = cls()  # env vars over defaults
        for name in env.model_fields_set:
            values[name] = getattr(env, name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def system_db(self) -> Path:
        return self.data_dir / "system.sqlite"

    @property
    def tenants_dir(self) -> Path:
        return self.data_dir / "tenants"

    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def check(self) -> None:
        """Refuse configurations that are insecure: no auth off loopback."""
        if not self.auth and not self.is_loopback():
            raise ValueError(
                f"Refusing to run without authentication on {self.host}: authentication may be "
                "turned off only on a loopback address (127.0.0.1, ::1, localhost)"
            )
