"""Bad input never crashes: ids, attribute names and values with any Unicode (control and
format characters, noncharacters, lone surrogates, very long strings, deep nesting) get a 4xx
with a ``detail`` and change nothing, or are stored and read back as sent. Never a 5xx.

Hypothesis drives one in-process app (open, fresh data directory) so that its examples run
fast; each example checks the broker's state before and after.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services

BASE = "/ngsi-ld/v1"
_DATA = Path(tempfile.mkdtemp(prefix="cityvisor-unicode-"))
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
CLIENT = TestClient(create_app(Settings(data_dir=_DATA / "data", auth=False,
                                        allow_context_fetch=False),
                               build_services=Services.build),
                    base_url="http://127.0.0.1:1026")
CLIENT.__enter__()
atexit.register(CLIENT.__exit__, None, None, None)

# every code point, lone surrogates included; biased towards the troublesome ones
TROUBLE = ["\u202e", "\u200b", "\ufeff", "\ufdd0", "\uffff", "\U0010ffff", "\x00", "\x7f",
           "\u0085", "\ud800", "\udfff", "\u2028", "é", "\U0001f30a", "%", "/", "#", "?", " "]
any_char = st.one_of(st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                   categories=None), st.sampled_from(TROUBLE))
text = st.one_of(st.text(any_char, max_size=40),
                 st.builds(lambda c, n: c * n, st.sampled_from(TROUBLE + ["a"]),
                           st.integers(1000, 20000)))
# what still fits in a URL once percent-encoded (12 characters per 4-byte code point)
url_text = st.one_of(st.text(any_char, max_size=40),
                     st.builds(lambda c, n: c * n, st.sampled_from(TROUBLE + ["a"]),
                               st.integers(500, 4000)))
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children,
                                                                       max_size=3),
    max_leaves=12)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def body(doc: Any) -> bytes:
    """JSON text as a client could send it: lone surrogates as \\uXXXX escapes."""
    return json.dumps(doc, ensure_ascii=True).encode()


def count(entity_type: str = "Fuzz") -> int:
    answer = CLIENT.get(f"{BASE}/entities", params={"type": entity_type, "count": "true",
                                                    "limit": 0})
    assert answer.status_code == 200, answer.text
    return int(answer.headers["NGSILD-Results-Count"])


def assert_problem(answer: Any) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        problem = answer.json()
        assert problem.get("type") and problem.get("detail") is not None, problem


def deep(n: int) -> bytes:
    """A JSON text nested ``n`` levels deep (too deep for json.dumps to write)."""
    return b'{"a": [' * n + b'"x"' + b"]}" * n


@FUZZ
@given(suffix=text)
def test_an_entity_id_is_stored_as_sent_or_refused_without_a_trace(suffix: str) -> None:
    entity_id = f"urn:ngsi-ld:Fuzz:{suffix}"
    before = count()
    answer = CLIENT.post(f"{BASE}/entities", content=body({"id": entity_id, "type": "Fuzz"}),
                         headers={"Content-Type": "application/json"})
    assert_problem(answer)
    if answer.status_code == 201:
        assert count() == before + 1
        got = CLIENT.get(f"{BASE}/entities/{quote(entity_id, safe='')}")
        assert got.status_code == 200 and got.json()["id"] == entity_id, got.text
        assert CLIENT.delete(f"{BASE}/entities/{quote(entity_id, safe='')}").status_code == 204
    else:
        assert count() == before


@FUZZ
@given(name=text, value=json_values)
def test_attribute_names_and_values_never_crash(name: str, value: Any) -> None:
    entity_id = "urn:ngsi-ld:Fuzz:attributes"
    CLIENT.delete(f"{BASE}/entities/{entity_id}")
    created = CLIENT.post(f"{BASE}/entities", json={"id": entity_id, "type": "Fuzz",
                                                     "n": {"type": "Property", "value": 1}})
    assert created.status_code == 201, created.text
    before = CLIENT.get(f"{BASE}/entities/{entity_id}").json()
    for method, path, doc in (
            ("POST", f"/entities/{entity_id}/attrs", {name: {"type": "Property", "value": value}}),
            ("PATCH", f"/entities/{entity_id}/attrs", {"n": {"type": "Property", "value": value}}),
            ("PATCH", f"/entities/{entity_id}", {name: value}),
    ):
        answer = CLIENT.request(method, BASE + path, content=body(doc),
                                headers={"Content-Type": "application/json"})
        assert_problem(answer)
        if answer.status_code >= 400:
            assert CLIENT.get(f"{BASE}/entities/{entity_id}").json() == before
        else:
            before = CLIENT.get(f"{BASE}/entities/{entity_id}").json()


@FUZZ
@given(raw=url_text, param=st.sampled_from(["q", "attrs", "type", "id", "idPattern", "pick",
                                        "omit", "scopeQ", "georel", "coordinates", "lang",
                                        "orderBy", "datasetId", "options"]))
def test_query_parameters_never_crash(raw: str, param: str) -> None:
    before = count()
    note(f"{param}={raw!r}")
    answer = CLIENT.get(f"{BASE}/entities?type=Fuzz&{param}={quote(raw, errors='surrogatepass')}")
    assert_problem(answer)
    assert count() == before


@FUZZ
@given(raw=st.binary(max_size=24))
def test_any_bytes_in_a_path_id_never_crash(raw: bytes) -> None:
    encoded = "".join(f"%{b:02X}" for b in raw)
    for method in ("GET", "DELETE"):
        assert_problem(CLIENT.request(method, f"{BASE}/entities/urn:ngsi-ld:Fuzz:{encoded}"))


def test_deep_nesting_and_huge_bodies_are_refused_or_stored() -> None:
    before = count()
    wide = {"id": "urn:ngsi-ld:Fuzz:wide", "type": "Fuzz",
            **{f"p{i}": {"type": "Property", "value": i} for i in range(5000)}}
    nested = (b'{"id": "urn:ngsi-ld:Fuzz:deep", "type": "Fuzz", "v": {"type": "Property", '
              b'"value": ' + deep(5000) + b"}}")
    for entity_id, content in (("wide", body(wide)), ("deep", nested)):
        answer = CLIENT.post(f"{BASE}/entities", content=content,
                             headers={"Content-Type": "application/json"})
        assert_problem(answer)
        if answer.status_code == 201:
            CLIENT.delete(f"{BASE}/entities/urn:ngsi-ld:Fuzz:{entity_id}")
    assert count() == before
    invalid = CLIENT.post(f"{BASE}/entities", content=b'{"id": "urn:a:\xff", "type": "Fuzz"}',
                          headers={"Content-Type": "application/json"})
    assert invalid.status_code == 400, invalid.text
