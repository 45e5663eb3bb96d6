"""Term maps: expansion and compaction with the core and user contexts (clause 5.5.7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityvisor.broker.contexts import core_context_document
from cityvisor.ngsild.context import CORE_CONTEXT_URLS, DEFAULT_VOCAB, compile_context

CORE = core_context_document()["@context"]
SDM_DIR = Path(__file__).resolve().parents[2] / "src/cityvisor/data/smart-data-models"


def test_core_terms_expand_to_core_iris() -> None:
    terms = compile_context([], CORE)
    assert terms.expand("location") == "https://uri.etsi.org/ngsi-ld/location"
    assert terms.compact("https://uri.etsi.org/ngsi-ld/location") == "location"
    assert terms.expand("temperature") == DEFAULT_VOCAB + "temperature"
    assert terms.compact(DEFAULT_VOCAB + "temperature") == "temperature"


def test_every_published_core_url_is_known() -> None:
    for n in range(3, 10):
        assert f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{n}.jsonld" in CORE_CONTEXT_URLS
    assert "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld" in CORE_CONTEXT_URLS


def test_user_terms_curies_and_iris() -> None:
    user = {"ex": "https://example.org/ns#", "speed": "ex:speed",
            "Car": {"@id": "https://example.org/types/Car"}, "brand": "https://example.org/brand"}
    terms = compile_context([user], CORE)
    assert terms.expand("speed") == "https://example.org/ns#speed"
    assert terms.expand("ex:colour") == "https://example.org/ns#colour"
    assert terms.expand("Car") == "https://example.org/types/Car"
    assert terms.expand("urn:ngsi-ld:x") == "urn:ngsi-ld:x"
    assert terms.compact("https://example.org/ns#speed") == "speed"
    assert terms.compact("https://example.org/ns#colour") == "ex:colour"
    assert terms.compact("https://other.org/x") == "https://other.org/x"


def test_core_terms_cannot_be_overridden() -> None:
    terms = compile_context([{"location": "https://evil.example/location"}], CORE)
    assert terms.expand("location") == "https://uri.etsi.org/ngsi-ld/location"


def test_smart_data_models_context() -> None:
    document = json.loads((SDM_DIR / "dataModel.Streetlighting/context.jsonld").read_text())
    terms = compile_context([document["@context"]], CORE)
    iri = "https://smartdatamodels.org/dataModel.Streetlighting/powerState"
    assert terms.expand("powerState") == iri
    assert terms.compact(iri) == "powerState"


names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,20}", fullmatch=True)


@given(st.dictionaries(names, st.sampled_from(["https://a.org/", "https://b.org/ns#"]),
                       max_size=8), names)
def test_expand_compact_round_trip(mapping: dict[str, str], term: str) -> None:
    user = {name: base + name for name, base in mapping.items()}
    terms = compile_context([user], CORE)
    assert terms.expand(terms.compact(terms.expand(term))) == terms.expand(term)


@pytest.mark.parametrize("term", ["observedAt", "createdAt", "GeoProperty", "Property"])
def test_core_keywords_round_trip(term: str) -> None:
    terms = compile_context([], CORE)
    assert terms.compact(terms.expand(term)) == term


def test_sdm_context_names_the_domain_context() -> None:
    from cityvisor.ngsild.context import sdm_context

    assert sdm_context("Weather") == (
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld")
    assert sdm_context("Alert") != sdm_context("Environment")


def test_context_rel_is_the_json_ld_link_relation() -> None:
    from cityvisor.ngsild.context import CONTEXT_REL

    assert CONTEXT_REL == "http://www.w3.org/ns/json-ld#context"


def test_context_doctest_examples_run() -> None:
    import doctest

    from cityvisor.ngsild import context

    result = doctest.testmod(context, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
