"""Temporal history below HTTP: recording rules, parsing, the SQLite queries, retention CLI."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cityvisor.broker.temporal import TemporalQuery, changes_to_records
from cityvisor.cli import app
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.time import Period, add_months, normalize_time, parse_duration
from cityvisor.store import sqlite_temporal as st
from cityvisor.store.base import Buckets, TimeFilter, WriteOp
from cityvisor.store.records import InstanceRecord

NOW = "2026-01-01T00:00:00.000000Z"


def inst(value: object, dataset: str | None = None, t: str = NOW, **extra: object) -> dict:
    out = {"type": "Property", "value": value, "createdAt": t, "modifiedAt": t, **extra}
    if dataset:
        out["datasetId"] = dataset
    return out


def entity(**attrs: list[dict]) -> dict:
    return {"id": "urn:x:1", "type": ["T"], "createdAt": NOW, "modifiedAt": NOW,
            "attrs": dict(attrs)}


def test_records_of_changes() -> None:
    a, b = inst(1), inst("s", "urn:d:b")
    created = changes_to_records([WriteOp(None, entity(a=[a, b]))], lambda: NOW)
    kinds = [type(r).__name__ for r in created]
    assert kinds == ["EntityRecord", "InstanceRecord", "InstanceRecord"]
    rows = [r for r in created if isinstance(r, InstanceRecord)]
    assert rows[0].num == 1 and rows[1].num is None and rows[1].dataset_id == "urn:d:b"
    # only the changed instance is recorded; an unchanged attribute is not
    old = entity(a=[a, b], c=[inst(True)])
    new = entity(a=[inst(2, t="2026-01-02T00:00:00.000000Z"), b], c=old["attrs"]["c"])
    rows = changes_to_records([WriteOp(old, new)], lambda: NOW)
    assert [(r.attr, r.num) for r in rows] == [("a", 2)]
    # a removed instance and a removed attribute are recorded as deletions
    new = entity(a=[a])
    rows = changes_to_records([WriteOp(old, new)], lambda: NOW)
    assert sorted((r.attr, r.dataset_id, r.deleted_at) for r in rows) == [
        ("a", "urn:d:b", NOW), ("c", "", NOW)]
    rows = changes_to_records([WriteOp(old, None)], lambda: "2026-02-01T00:00:00.000000Z")
    assert len(rows) == 4 and rows[-1].deleted_at == "2026-02-01T00:00:00.000000Z"
    # observedAt is normalised; booleans and huge integers
    rows = changes_to_records([WriteOp(None, entity(
        a=[inst(2**70, observedAt="2026-01-01T01:00:00+01:00")], b=[inst(False)]))], lambda: NOW)
    assert rows[1].observed_at == NOW and rows[1].num == float(2**70) and rows[2].num is None


def test_time_and_duration_parsing() -> None:
    assert normalize_time("2024-01-01T00:00:00Z") == "2024-01-01T00:00:00.000000Z"
    assert normalize_time("2024-01-01T02:00:00.5+02:00") == "2024-01-01T00:00:00.500000Z"
    assert normalize_time("2024-01-01T00:00:00") == "2024-01-01T00:00:00.000000Z"
    for bad in ("2024-01-01", "nope", 5, None):
        with pytest.raises(BadRequestData):
            normalize_time(bad)
    assert parse_duration("PT1H") == Period(ms=3_600_000)
    assert parse_duration("P1DT0.5S") == Period(ms=86_400_500)
    assert parse_duration("P2W") == Period(ms=14 * 86_400_000)
    assert parse_duration("P1Y2M") == Period(months=14)
    assert parse_duration("PT0S").whole and parse_duration(None).whole
    for bad in ("P", "PT", "1H", "P1H", "PT1D", "P1M1D", "", "P-1D"):
        with pytest.raises(BadRequestData):
            parse_duration(bad)
    assert add_months(datetime(2024, 1, 31, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    q = TemporalQuery.parse(timerel="between", time_at="2024-01-01T00:00:00Z",
                            end_time_at="2024-01-02T00:00:00Z", timeproperty="modifiedAt")
    f = q.time_filter()
    assert f.timeproperty == "modifiedAt" and f.from_ and f.before
    assert TemporalQuery.parse(last_n="5").last_n == 5
    with pytest.raises(BadRequestData):
        TemporalQuery.parse(last_n=True)


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    db.executescript(st.TEMPORAL_SCHEMA)
    return db


def test_history_queries_use_the_indexes(conn: sqlite3.Connection) -> None:
    records = [InstanceRecord("e", "T", "a", "", f"2024-01-01T{h:02d}:00:00.000000Z", NOW,
                                 NOW, None, float(h), '{"type": "Property", "value": 0}')
               for h in range(24)]
    records.append(InstanceRecord("e", "T", "b", "", NOW, NOW, NOW, None, None, "{}"))
    st.write_instances(conn, records)
    assert st.entity_attributes(conn, "e") == ["a", "b"]
    assert st.entity_attributes(conn, "nobody") == []
    time = TimeFilter(after="2024-01-01T20:00:00.000000Z")
    rows = st.attribute_history(conn, "e", "a", time, 10)
    assert [r[3][11:13] for r in rows] == ["21", "22", "23"]
    _, where, params = st.time_sql(time)
    plan = " ".join(str(r) for r in conn.execute(
        f"EXPLAIN QUERY PLAN SELECT * FROM temporal_instances INDEXED BY temporal_observed "
        f"WHERE {st.SERIES}{where}", ["e", "a", *params]))
    assert "temporal_observed (series=? AND observed_at>?)" in plan
    first = "2024-01-01T00:00:00.000000Z"
    rows = st.aggregate(conn, "e", "a", TimeFilter(), ["sum", "totalCount"],
                        Buckets(period_ms=6 * 3_600_000), first)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (0, 15.0, 6), (1, 51.0, 6), (2, 87.0, 6), (3, 123.0, 6)]


def test_purge_condition() -> None:
    assert st.purge_condition({}, None) is None
    sql, params = st.purge_condition({"a": "X"}, "Y")  # type: ignore[misc]
    assert params == ["a", "X", "a", "Y"] and "NOT IN" in sql


def test_retention_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    data = str(tmp_path / "data")
    r = runner.invoke(app, ["retention", "set", "--tenant", "city", "--days", "30",
                            "--data-dir", data])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["retention", "set", "--tenant", "city", "--attribute", "temp",
                            "--days", "7", "--data-dir", data])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["retention", "list", "--tenant", "city", "--data-dir", data])
    assert r.exit_code == 0
    assert "30" in r.output and "default-context/temp" in r.output and "7" in r.output
    r = runner.invoke(app, ["retention", "set", "--tenant", "city", "--attribute", "temp",
                            "--clear", "--data-dir", data])
    assert r.exit_code == 0
    r = runner.invoke(app, ["retention", "list", "--tenant", "city", "--data-dir", data])
    assert "default-context/temp" not in r.output
    assert runner.invoke(app, ["retention", "set", "--data-dir", data]).exit_code == 2
    r = runner.invoke(app, ["retention", "set", "--tenant", "bad name", "--days", "1",
                            "--data-dir", data])
    assert r.exit_code == 2
