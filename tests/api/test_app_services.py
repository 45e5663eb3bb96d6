"""The app is given its services, or builds them on start with the builder it is given."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services


def test_built_services_are_started_and_closed_by_the_app(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False)
    events: list[str] = []

    class Recorded(Services):
        async def start(self) -> None:
            events.append("start")
            await super().start()

        async def close(self) -> None:
            events.append("close")
            await super().close()

    def build(given: Settings) -> Recorded:
        assert given is settings
        return Recorded.build(given)  # type: ignore[return-value]

    with TestClient(create_app(settings, build_services=build),
                    base_url="http://127.0.0.1:1026") as client:
        assert client.get("/ngsi-ld/v1/types").status_code == 200
        assert events == ["start"]
    assert events == ["start", "close"]
