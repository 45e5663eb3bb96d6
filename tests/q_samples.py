"""Shared q-language samples: a vocabulary, entity builders and Hypothesis strategies of q
expressions (used by the evaluator tests and the SQL translation tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from cityvisor.ngsild.query import parse_q

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def expand(term: str) -> str:
    return VOCAB + term


def q(text: str):
    return parse_q(text, expand)


def prop(value: object, **extra: object) -> dict:
    return {"type": "Property", "value": value, **extra}


def entity(**attrs: list[dict]) -> dict:
    return {"id": "urn:ngsi-ld:T:1", "type": [VOCAB + "T"],
            "attrs": {VOCAB + name: insts for name, insts in attrs.items()}}


NAMES = st.sampled_from(["a", "b", "c"])
PATHS = st.one_of(
    NAMES,
    st.builds(lambda n, m: f"{n}.{m}", NAMES,
              st.sampled_from(["s", "observedAt", "unitCode", "s.observedAt"])),
    st.builds(lambda n, m: f"{n}[{m}]", NAMES, st.sampled_from(["x", "y", "x.y", "@value"])),
)
VALUES = st.one_of(
    st.integers(-3, 6).map(str),
    st.sampled_from(["1.5", "2.0", "-0.5", "1e0", "true", "false", '"on"', '"off"', '"x"',
                     '""', '"Arena"', '"a\\"b"', "urn:ngsi-ld:D:1", "2018-12-04",
                     "2018-12-04T12:00:00Z", "2018-12-04T13:00:00+01:00"]),
)
RANGES = st.sampled_from(["0..2", "-3..1.5", '"a".."p"', "2018-12-04T11:00:00Z..2018-12-04T12:00:00Z"])
TERMS = st.one_of(
    PATHS,
    PATHS.map(lambda path: "!" + path),
    st.builds(lambda path, op, v: f"{path}{op}{v}", PATHS,
              st.sampled_from(["==", "!=", ">", ">=", "<", "<="]),
              VALUES.filter(lambda v: v not in ("true", "false"))),
    st.builds(lambda path, op, v: f"{path}{op}{v}", PATHS, st.sampled_from(["==", "!="]),
              st.one_of(VALUES, RANGES, st.lists(VALUES, min_size=2, max_size=3).map(",".join))),
    st.builds(lambda path, op, v: f"{path}{op}{v}", PATHS, st.sampled_from(["~=", "!~="]),
              st.sampled_from(["^o", '"n$"', '"(?i)ARE"', "[0-9]", '"^$"'])),
)
EXPRESSIONS = st.recursive(
    TERMS,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(";".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=6,
)
