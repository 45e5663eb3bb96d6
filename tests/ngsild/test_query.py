"""Tests of cityvisor.ngsild.query: the NGSI-LD Query Language (ETSI GS CIM 009 v1.8, 4.9)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from q_samples import EXPRESSIONS, VOCAB, entity, prop, q

from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.query import (
    And,
    Compare,
    Exists,
    Literal,
    Match,
    Or,
    Path,
    Range,
    ValueList,
    evaluate,
    parse_q,
    pattern_matches,
    unescape_q_member,
)


def p(name: str, *subs: str, meta: str | None = None, members: tuple[str, ...] = ()) -> Path:
    return Path(VOCAB + name, tuple(VOCAB + s for s in subs), meta, members)


def num(value: float) -> Literal:
    return Literal("number", value)


def text(value: str) -> Literal:
    return Literal("string", value)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("source", "expected"), [
    ("a==1", Compare(p("a"), "==", num(1))),
    ("a!=-2.5", Compare(p("a"), "!=", num(-2.5))),
    ("a>1e3", Compare(p("a"), ">", num(1000.0))),
    ("a>=1.5E-2", Compare(p("a"), ">=", num(0.015))),
    ("a<0", Compare(p("a"), "<", num(0))),
    ("a<=3", Compare(p("a"), "<=", num(3))),
    ('a=="on"', Compare(p("a"), "==", text("on"))),
    (r'a=="say \"hi\""', Compare(p("a"), "==", text('say "hi"'))),
    ("a==true", Compare(p("a"), "==", Literal("bool", True))),
    ("a!=false", Compare(p("a"), "!=", Literal("bool", False))),
    ("a==1..5", Compare(p("a"), "==", Range(num(1), num(5)))),
    ("a!=1.5..2.5", Compare(p("a"), "!=", Range(num(1.5), num(2.5)))),
    ('a=="a".."m"', Compare(p("a"), "==", Range(text("a"), text("m")))),
    ('a=="x","y"', Compare(p("a"), "==", ValueList((text("x"), text("y"))))),
    ("a!=1,2", Compare(p("a"), "!=", ValueList((num(1), num(2))))),
    ("a~=ab.*", Match(p("a"), "ab.*")),
    ('a!~="(?i)^x|y$"', Match(p("a"), "(?i)^x|y$", negated=True)),
    ("a~=^(a|b)c[)]", Match(p("a"), "^(a|b)c[)]")),
    ("a", Exists(p("a"))),
    ("!a", Exists(p("a"), negated=True)),
    ("a.s==1", Compare(p("a", "s"), "==", num(1))),
    ("a.s.t==1", Compare(p("a", "s", "t"), "==", num(1))),
    ("a.observedAt>2018-12-04T12:00:00Z",
     Compare(p("a", meta="observedAt"), ">",
             Literal("datetime", "2018-12-04T12:00:00.000000Z"))),
    ('a.s.unitCode=="C62"', Compare(p("a", "s", meta="unitCode"), "==", text("C62"))),
    ('a[x.y]=="q"', Compare(p("a", members=("x", "y")), "==", text("q"))),
    ('a[x][y]=="q"', Compare(p("a", members=("x", "y")), "==", text("q"))),
    ("a.s[x]==1", Compare(p("a", "s", members=("x",)), "==", num(1))),
    ("r==urn:ngsi-ld:Device:1", Compare(p("r"), "==", Literal("uri", "urn:ngsi-ld:Device:1"))),
    ('r=="urn:ngsi-ld:Device:1"', Compare(p("r"), "==", text("urn:ngsi-ld:Device:1"))),
    ("d==2018-12-04", Compare(p("d"), "==", Literal("date", "2018-12-04"))),
    ("d<12:30:00Z", Compare(p("d"), "<", Literal("time", "12:30:00Z"))),
    ("d==2018-12-04T12:00:00+01:00..2018-12-04T13:00:00Z",
     Compare(p("d"), "==", Range(Literal("datetime", "2018-12-04T11:00:00.000000Z"),
                                 Literal("datetime", "2018-12-04T13:00:00.000000Z")))),
])
def test_parse_terms(source: str, expected: object) -> None:
    assert q(source) == expected


def test_expand_applies_to_attribute_and_sub_attribute_names_only() -> None:
    seen: list[str] = []

    def recording(term: str) -> str:
        seen.append(term)
        return "urn:x:" + term

    node = parse_q("temp.accuracy.observedAt>2020-01-01;addr[street.name]==\"x\"", recording)
    assert seen == ["temp", "accuracy", "addr"]
    assert isinstance(node, And)
    assert node.children[0].path == Path("urn:x:temp", ("urn:x:accuracy",), "observedAt")
    assert node.children[1].path == Path("urn:x:addr", (), None, ("street", "name"))


def test_precedence_and_parentheses() -> None:
    a, b, c = (Exists(p(n)) for n in "abc")
    assert q("a;b|c") == Or((And((a, b)), c))
    assert q("a|b;c") == Or((a, And((b, c))))
    assert q("a;(b|c)") == And((a, Or((b, c))))
    assert q("((a));((b|(c)))") == And((a, Or((b, c))))
    assert q("a;b;c") == And((a, b, c))
    assert q("(a|b)|c") == Or((a, b, c))
    assert q(" a == 1 ; b ") == And((Compare(p("a"), "==", num(1)), b))


@pytest.mark.parametrize("source", [
    "", "   ", "(", ")", "()", "(a==1", "a==1)", "a==1;", "a==1|", ";a", "|a", "a==",
    "a>", "a=1", "a===1", "a<>1", "a==1..", "a==..5", "a==1..2..3", 'a==1.."z"',
    "a>1..5", "a>1,2", "a==1,", "a==true..false", "a>true", "a==foo", 'a=="open',
    "a~=", "a~=(", "a~=\"[\"", "a..b==1", "a.==1", "a[x==1", "a[]==1", "!", "!(a)",
    "a==1 b==2", "a==2018-13-45T00:00:00Z", "observedAt==1", "a.observedAt.b==1",
    "a.observedAt[x]==1", "a==1e999", "a==1,2..3",
])
def test_syntax_errors(source: str) -> None:
    with pytest.raises(BadRequestData) as info:
        q(source)
    assert "position" in info.value.detail or "datetime" in info.value.detail


def test_error_names_position_and_text() -> None:
    with pytest.raises(BadRequestData) as info:
        q("a==1;b==;c")
    assert "position 9" in info.value.detail
    assert "';c'" in info.value.detail


def test_quotes_in_expanded_names_are_rejected() -> None:
    with pytest.raises(BadRequestData):
        parse_q("a==1", lambda term: 'urn:x:"' + term)


def test_render() -> None:
    source = '(a==1|b!="x\\"y");!c;d.s.observedAt>=2018-12-04T12:00:00Z;e[f.g]~="^a"'
    assert str(q(source)) == (
        '(a==1|b!="x\\"y");!c;d.s.observedAt>=2018-12-04T12:00:00.000000Z;e[f.g]~="^a"')


def test_pattern_matches() -> None:
    assert pattern_matches("^ab", "abc")
    assert not pattern_matches("^ab", "cab")
    assert not pattern_matches("x", 3)
    with pytest.raises(BadRequestData):
        pattern_matches("(", "x")


# --------------------------------------------------------------------------- evaluate


STREETLIGHT = entity(
    power=[prop("on", observedAt="2026-11-27T10:00:00Z", unitCode="C62",
                subs={VOCAB + "reliability": prop(0.9, observedAt="2026-11-27T09:00:00Z")}),
           prop("off", datasetId="urn:ngsi-ld:Dataset:b")],
    lum=[prop(42), prop(7.5, datasetId="urn:ngsi-ld:Dataset:x")],
    group=[{"type": "Relationship", "object": "urn:ngsi-ld:Group:3"}],
    peers=[{"type": "Relationship", "object": ["urn:ngsi-ld:L:1", "urn:ngsi-ld:L:2"]}],
    name=[{"type": "LanguageProperty", "languageMap": {"fr": "Arènes", "en": "Arena"}}],
    tags=[prop(["led", "smart"])],
    samples=[{"type": "ListProperty", "valueList": [1, 2, 3]}],
    parts=[{"type": "ListRelationship",
            "objectList": [{"object": "urn:ngsi-ld:P:1", "objectType": "urn:x:Part"},
                           "urn:ngsi-ld:P:2"]}],
    kind=[{"type": "VocabProperty", "vocab": VOCAB + "lamp"}],
    cfg=[{"type": "JsonProperty", "json": {"mode": "auto", "level": 3}}],
    address=[prop({"street": {"name": "Rue X", "number": 5}, "city": "Nîmes"})],
    installed=[prop({"@type": "DateTime", "@value": "2020-05-01T08:00:00+02:00"})],
    on=[prop(True)],
    location=[{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.36, 43.84]}}],
)


@pytest.mark.parametrize(("source", "expected"), [
    ('power=="on"', True), ('power=="off"', True), ('power=="dim"', False),
    ('power!="on"', True),  # the other instance differs
    ("lum>40", True), ("lum<8", True), ("lum==7.5", True), ("lum==8..40", False),
    ("lum==40..50", True), ("lum!=42,7.5", False), ("lum!=42", True),
    ('lum=="42"', False), ('power==1', False), ('power>"a"', True),
    ("power.observedAt>2026-11-27T09:59:59Z", True),
    ("power.observedAt==2026-11-27T11:00:00+01:00", True),
    ("power.observedAt<2026-11-27T10:00:00Z", False),
    ('power.unitCode=="C62"', True), ("power.unitCode", True), ("lum.unitCode", False),
    ("power.datasetId==urn:ngsi-ld:Dataset:b", True),
    ("power.reliability>0.5", True), ("power.reliability.observedAt<2026-11-27T10:00:00Z", True),
    ("power.reliability", True), ("power.other", False), ("lum.reliability", False),
    ("group==urn:ngsi-ld:Group:3", True), ('group=="urn:ngsi-ld:Group:3"', True),
    ("group~=Group", True), ("peers==urn:ngsi-ld:L:2", True), ("peers==urn:ngsi-ld:L:3", False),
    ('name=="Arena"', True), ("name~=^Ar", True), ('name=="Arene"', False),
    ('tags=="smart"', True), ('tags=="dumb"', False),
    ("samples==2", True), ("samples>3", False),
    ("parts==urn:ngsi-ld:P:1", True), ("parts==urn:ngsi-ld:P:2", True),
    ("parts==urn:x:Part", False),
    ("kind==https://uri.etsi.org/ngsi-ld/default-context/lamp", True),
    ('cfg[mode]=="auto"', True), ("cfg[level]>=3", True), ("cfg[missing]", False),
    ("cfg[mode]", True), ('cfg=="auto"', False),
    ('address[street.name]=="Rue X"', True), ("address[street.number]==1..9", True),
    ('address[city]~="^N"', True), ("address[street]", True), ('address[street]=="x"', False),
    ("installed==2020-05-01T06:00:00Z", True), ("installed>2020-05-01T07:00:00Z", False),
    ("installed==2020-05-01T06:00:00Z..2020-05-02T00:00:00Z", True),
    ("on==true", True), ("on!=true", False), ("on==1", False), ("on==false", False),
    ('location[type]=="Point"', True),
    ("missing", False), ("!missing", True), ("!power", False),
    ("missing!=1", False), ('missing!~="x"', False), ('power!~="n"', True), ('power!~="o"', False),
    ('power=="on";lum>40', True), ('power=="dim"|lum>40', True),
    ('power=="dim";lum>40|!missing', True), ('power=="dim";(lum>40|!missing)', False),
    # clause 4.9: != negates == on one instance (another data type is unequal, an array is
    # unequal when no element is equal), relationships have no order, language filters
    ("power!=1", True), ('lum!="x"', True), ("lum!=1..50", False), ("lum!=40..50", True),
    ('tags!="led"', False), ('tags!="dumb"', True), ('tags!="led","dumb"', False),
    ('group>"urn:a"', False), ('group<"zzz"', False), ('group!="urn:x"', True),
    ('parts>"a"', False), ("group.observedAt>2000-01-01T00:00:00Z", False),
    ('name[en]=="Arena"', True), ('name[fr]=="Arena"', False), ('name[*]=="Arènes"', True),
    ("name[de]", False), ("name[*]", True), ("name[en]", True), ('name[en]!="Arena"', False),
    ('name[fr]!="Arena"', True), ('name[de]!="x"', False),
])
def test_evaluate(source: str, expected: bool) -> None:
    assert evaluate(q(source), STREETLIGHT) is expected


def test_datetime_literal_needs_a_datetime_string() -> None:
    e = entity(a=[prop("soon")], b=[prop(20181204)], c=[prop("2018-12-04T12:00:00Z")])
    assert not evaluate(q("a>2018-12-04T12:00:00Z"), e)
    assert not evaluate(q("b>2018-12-04T12:00:00Z"), e)
    assert evaluate(q("c==2018-12-04T13:00:00+01:00"), e)
    assert evaluate(q("c>=2018-12-04"), e)  # a date compares as a string


# --------------------------------------------------------------------------- hypothesis

@settings(max_examples=200, deadline=None)
@given(EXPRESSIONS)
def test_render_round_trip(source: str) -> None:
    node = q(source)
    assert q(str(node)) == node
    assert str(q(str(node))) == str(node)


def test_percent_is_not_an_attribute_name_character() -> None:
    """Clause 4.9: %x25 is left out of attrNameChar."""
    with pytest.raises(BadRequestData):
        parse_q("waterLevel%3E3", lambda n: n)


@pytest.mark.parametrize(("sent", "meant"), [
    ("waterLevel%3E3", "waterLevel>3"),
    ("a%3D%3D%22x%22%3Bb%3C2", 'a=="x";b<2'),
    ('name=="50%25"', 'name=="50%25"'),
    ('name=="Eiffel%20Tower"', 'name=="Eiffel Tower"'),
    ("a>1", "a>1"),
])
def test_a_percent_encoded_q_member_is_decoded_once(sent: str, meant: str) -> None:
    assert unescape_q_member(sent) == meant


def test_linked_entity_paths() -> None:
    """Clause 4.9: ``rel{attr}`` addresses an attribute of the Entity ``rel`` links to; only
    accepted where Linked Entity retrieval is possible."""
    from cityvisor.ngsild.query import link_depth

    node = parse_q('owner{works{name}}=="x"', lambda n: n, linked=True)
    assert isinstance(node, Compare)
    assert node.path.attr == "owner" and node.path.linked is not None
    assert node.path.linked.linked == Path("name", labels=("name",))
    assert str(node) == 'owner{works{name}}=="x"'
    assert link_depth(node) == 2
    assert link_depth(parse_q("a==1;(b{c}|d)", lambda n: n, linked=True)) == 1
    assert link_depth(parse_q("a==1", lambda n: n)) == 0
    with pytest.raises(BadRequestData):
        parse_q('owner{name}=="x"', lambda n: n)
    with pytest.raises(BadRequestData):
        parse_q('owner{name=="x"', lambda n: n, linked=True)
