"""What both client scenarios share (standard library only: they run in the client libraries'
own virtual environments, which do not hold cityvisor)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any


def step(name: str) -> None:
    """Report a step done (``test_clients.py`` checks each one)."""
    print("ok", name, flush=True)


def notifications(receiver: str, timeout: float = 10.0) -> list[Any]:
    """The notifications the test's receiver (``.../notify``) holds, once it holds any, or []
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(receiver.rsplit("/", 1)[0] + "/received") as answer:
            received: list[Any] = json.load(answer)
        if received or time.monotonic() > deadline:
            return received
        time.sleep(0.1)
