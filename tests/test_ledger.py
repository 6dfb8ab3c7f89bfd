from __future__ import annotations

import math
import multiprocessing
import os
import sqlite3

import numpy as np
import pytest

from seiko.ledger import Ledger, LedgerError


@pytest.fixture
def ledger():
    with Ledger(":memory:") as led:
        yield led


def snapshot(led: Ledger):
    return [(q.id, q.value if q.value is None or not math.isnan(q.value) else "nan",
             q.feasible, q.error, q.labelled_at) for q in led.queries()]


def test_round_trip_with_nan_and_inf(ledger):
    ids = ledger.add_queries(0, ["AAA", "BBB", "CCC", "DDD"], "random")
    assert ids == sorted(ids) and len(set(ids)) == 4
    ledger.record(ids[:3], [1.5, float("nan"), float("-inf")], [True, False, False])
    qs = ledger.queries()
    assert [q.design for q in qs] == ["AAA", "BBB", "CCC", "DDD"]
    assert all(q.round == 0 and q.strategy == "random" for q in qs)
    assert qs[0].value == 1.5 and qs[0].feasible is True
    assert math.isnan(qs[1].value) and qs[1].feasible is False
    assert qs[2].value == float("-inf")
    assert qs[3].value is None and qs[3].feasible is None and qs[3].labelled_at is None
    assert all(q.labelled_at is not None for q in qs[:3])
    designs, values, feasible = ledger.labelled_arrays()
    assert designs == ["AAA", "BBB", "CCC"]
    assert values.dtype == np.float64 and feasible.dtype == bool
    assert values[0] == 1.5 and np.isnan(values[1]) and values[2] == -np.inf
    assert feasible.tolist() == [True, False, False]


def test_pending_vs_labelled_and_rounds(ledger):
    a = ledger.add_queries(0, ["x", "y"], "s")
    b = ledger.add_queries(1, ["z"], "s")
    ledger.record([a[0]], [float("nan")], [False])  # NaN-labelled is not pending
    assert [q.id for q in ledger.pending()] == [a[1], b[0]]
    assert [q.id for q in ledger.pending(0)] == [a[1]]
    assert [q.id for q in ledger.queries(labelled=True)] == [a[0]]
    assert [q.id for q in ledger.queries(1)] == b
    assert ledger.num_labelled() == 1


def test_record_refuses_overwrite_and_is_atomic(ledger):
    ids = ledger.add_queries(0, ["a", "b", "c"], "s")
    ledger.record([ids[0]], [1.0], [True])
    before = snapshot(ledger)
    with pytest.raises(LedgerError, match="already labelled"):
        ledger.record([ids[1], ids[0]], [2.0, 3.0], [True, True])
    with pytest.raises(LedgerError, match="unknown query id"):
        ledger.record([ids[2], 999], [2.0, 3.0], [True, True])
    with pytest.raises(LedgerError):
        ledger.record([ids[1], ids[1]], [2.0, 3.0], [True, True])
    with pytest.raises(LedgerError):
        ledger.record([ids[1]], [2.0, 3.0], [True])
    assert snapshot(ledger) == before
    assert ledger.queries()[0].value == 1.0


def test_persistence_across_reopen(tmp_path):
    path = tmp_path / "run.sqlite"
    with Ledger(path) as led:
        ids = led.add_queries(3, ["a", "b", "c"], "ucb")
        led.record(ids[:2], [0.25, float("nan")], [True, False], error=None)
        led.set_round_stage(3, "labelled")
        led.set_meta("config_hash", "abc123")
    with Ledger(path) as led:
        assert led.path == path
        qs = led.queries()
        assert [q.id for q in qs] == ids
        assert qs[0].value == 0.25 and math.isnan(qs[1].value) and qs[2].value is None
        assert led.round_stage(3) == "labelled"
        assert led.get_meta("config_hash") == "abc123"
        assert led.get_meta("schema_version") == "2"
        assert led.add_queries(4, ["d"], "ucb")[0] > max(ids)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_round_stages(ledger):
    assert ledger.round_stage(0) is None and ledger.completed_rounds() == []
    ledger.set_round_stage(2, "finetuned")
    ledger.set_round_stage(0, "sampled")
    ledger.set_round_stage(0, "finetuned")
    ledger.set_round_stage(1, "fitted")
    assert ledger.round_stage(0) == "finetuned" and ledger.round_stage(1) == "fitted"
    assert ledger.completed_rounds() == [0, 2]
    with pytest.raises(LedgerError):
        ledger.set_round_stage(3, "done")


def test_meta(ledger):
    assert ledger.get_meta("k") is None
    ledger.set_meta("k", "v1")
    ledger.set_meta("k", "v2")
    assert ledger.get_meta("k") == "v2"


def test_csv_export_then_import(ledger, tmp_path):
    ids = ledger.add_queries(0, ["A,B", "CC", "DD", "EE", "FF"], "s")
    ledger.add_queries(1, ["GG"], "s")
    out = tmp_path / "pending.csv"
    assert ledger.export_pending_csv(out, round=0) == 5
    lines = out.read_text().splitlines()
    assert lines[0] == "id,round,design" and lines[1] == f'{ids[0]},0,"A,B"'
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "id,value,feasible\n"
        f"{ids[0]},1.5,\n"
        f"{ids[1]},,\n"          # blank value => infeasible
        f"{ids[2]},-inf,\n"
        f"{ids[3]},nan,\n"
        f"{ids[4]},2.0,false\n"  # explicit flag wins
    )
    assert ledger.import_labels_csv(labels) == 5
    qs = ledger.queries(0)
    assert qs[0].value == 1.5 and qs[0].feasible is True
    assert math.isnan(qs[1].value) and qs[1].feasible is False
    assert qs[2].value == float("-inf") and qs[2].feasible is False
    assert math.isnan(qs[3].value) and qs[3].feasible is False
    assert qs[4].value == 2.0 and qs[4].feasible is False
    assert [q.design for q in ledger.pending()] == ["GG"]


def test_csv_import_without_feasible_column(ledger, tmp_path):
    ids = ledger.add_queries(0, ["a", "b"], "s")
    p = tmp_path / "l.csv"
    p.write_text(f"id,value\n{ids[0]},3\n{ids[1]},\n")
    assert ledger.import_labels_csv(p) == 2
    assert [q.feasible for q in ledger.queries()] == [True, False]


@pytest.mark.parametrize("bad_row, problem", [
    ("999,1.0", "unknown query id"),
    ("{labelled},1.0", "already labelled"),
    ("{pending2},abc", "could not convert"),
    ("{pending2},1.0,maybe", "bad feasible"),
    ("{pending1},2.0", "duplicate id"),
    ("x,1.0", "invalid literal"),
])
def test_csv_import_malformed_row(ledger, tmp_path, bad_row, problem):
    ids = ledger.add_queries(0, ["a", "b", "c"], "s")
    ledger.record([ids[0]], [1.0], [True])
    before = snapshot(ledger)
    p = tmp_path / "bad.csv"
    row = bad_row.format(labelled=ids[0], pending1=ids[1], pending2=ids[2])
    p.write_text(f"id,value,feasible\n{ids[1]},0.5,\n{row}\n")
    with pytest.raises(LedgerError, match=problem) as err:
        ledger.import_labels_csv(p)
    assert "line 3" in str(err.value) and "bad.csv" in str(err.value)
    assert snapshot(ledger) == before  # the good line 2 was not imported either


def test_csv_import_missing_header(ledger, tmp_path):
    ids = ledger.add_queries(0, ["a"], "s")
    p = tmp_path / "noheader.csv"
    p.write_text(f"{ids[0]},1.0\n")
    with pytest.raises(LedgerError, match="line 1"):
        ledger.import_labels_csv(p)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(LedgerError, match="line 1"):
        ledger.import_labels_csv(empty)
    assert ledger.num_labelled() == 0


def _open_at_once(path, barrier, results):
    barrier.wait()  # every process opens the new ledger in the same instant, as DDP ranks do
    try:
        with Ledger(path) as ledger:
            ledger.set_meta(f"pid{os.getpid()}", "here")
        results.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the parent
        results.put(repr(e))


def test_processes_opening_a_new_ledger_at_once_all_succeed(tmp_path):
    """Regression: two ranks creating the ledger together made one of them fail with
    'database is locked' (the journal-mode switch does not wait); about 1 trial in 8 did."""
    ctx = multiprocessing.get_context("fork")
    for trial in range(24):
        path = tmp_path / f"ledger{trial}.sqlite"
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [results.get(timeout=5) for _ in procs] == ["ok"] * 4, f"trial {trial}"
        with Ledger(path) as ledger:
            assert sum(ledger.get_meta(f"pid{p.pid}") == "here" for p in procs) == 4


# -- status, numeric values, and migration of version-1 ledgers ------------------------

# The version-1 layout exactly as seiko wrote it: value was TEXT, the repr of the float.
V1_SCHEMA = """
CREATE TABLE queries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, round INTEGER NOT NULL, design TEXT NOT NULL,
    strategy TEXT NOT NULL, value TEXT, feasible INTEGER, error TEXT, created_at REAL NOT NULL,
    labelled_at REAL
);
CREATE INDEX queries_round ON queries(round);
CREATE TABLE rounds (round INTEGER PRIMARY KEY, stage TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
V1_ROWS = [  # id, round, design, value text, feasible, error, labelled_at
    (1, 0, "AAA", "0.25", 1, None, 10.0),
    (2, 0, "BBB", "0.9", 1, None, 10.0),
    (3, 0, "CCC", "nan", 0, None, 10.0),
    (4, 0, "DDD", "-inf", 0, None, 10.0),
    (5, 1, "EEE", "nan", 0, "assay plate dropped", 20.0),
    (6, 1, "FFF", "10.0", 1, None, 20.0),
    (7, 1, "GGG", "9.0", 1, None, 20.0),
    (8, 1, "HHH", None, None, None, None),  # pending
]


def write_v1(path, rows, rounds=((0, "finetuned"), (1, "sampled")), meta=(("config", "abc123"),),
             version="1"):
    """A ledger in the version-1 format, written by raw sqlite3 as the old seiko wrote it."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.executemany("INSERT INTO queries VALUES (?, ?, ?, 's', ?, ?, ?, 1.0, ?)", rows)
    conn.executemany("INSERT INTO rounds VALUES (?, ?, 5.0)", rounds)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", version), *meta])
    conn.commit()
    conn.close()


def test_status_after_record(ledger):
    ids = ledger.add_queries(0, list("abcdefg"), "s")
    assert {q.status for q in ledger.queries()} == {"pending"}
    ledger.record(ids[:5], [0.5, float("nan"), float("-inf"), float("inf"), 2.0],
                  [True, False, False, True, False])
    ledger.record(ids[5:6], [float("nan")], [False], error="RuntimeError: assay plate dropped")
    qs = ledger.queries()
    assert [q.status for q in qs] == ["labelled", "infeasible", "infeasible", "infeasible",
                                      "infeasible", "failed", "pending"]
    assert qs[2].value == float("-inf") and qs[3].value == float("inf") and qs[4].value == 2.0
    assert math.isnan(qs[1].value) and math.isnan(qs[5].value) and qs[6].value is None
    assert qs[5].error == "RuntimeError: assay plate dropped"
    raw = ledger._conn.execute("SELECT value, typeof(value) FROM queries ORDER BY id").fetchall()
    assert raw == [(0.5, "real"), (None, "null"), (float("-inf"), "real"), (float("inf"), "real"),
                   (2.0, "real"), (None, "null"), (None, "null")]


def test_max_value_in_sql_is_numeric(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        ids = led.add_queries(0, ["a", "b", "c", "d", "e", "f"], "s")
        led.record(ids, [0.25, 0.9, 9.0, 10.0, float("nan"), float("-inf")],
                   [True, True, True, True, False, False])
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(value) FROM queries").fetchone()[0] == 10.0  # text max: '9.0'
    assert conn.execute("SELECT design FROM queries WHERE status='labelled' "
                        "ORDER BY value DESC LIMIT 2").fetchall() == [("d",), ("c",)]
    assert conn.execute("SELECT min(value) FROM queries WHERE value > 0").fetchone()[0] == 0.25
    conn.close()


def test_pandas_reads_values_as_float64(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        ids = led.add_queries(0, ["a", "b", "c", "d"], "s")
        led.record(ids[:3], [0.5, float("nan"), float("-inf")], [True, False, False])
    conn = sqlite3.connect(path)
    df = pd.read_sql("SELECT * FROM queries", conn)
    conn.close()
    assert df["value"].dtype == np.float64
    assert df["value"].iloc[0] == 0.5 and df["value"].iloc[2] == -np.inf
    assert df["value"].iloc[[1, 3]].isna().all()
    assert df["status"].tolist() == ["labelled", "infeasible", "infeasible", "pending"]


def test_version_1_ledger_is_migrated_on_open(tmp_path):
    path = tmp_path / "ledger.sqlite"
    write_v1(path, V1_ROWS)
    old = sqlite3.connect(path)
    assert old.execute("SELECT max(value) FROM queries").fetchone()[0] == "nan"  # the v1 problem
    old.execute("UPDATE sqlite_sequence SET seq=20 WHERE name='queries'")  # ids 9-20 were handed out
    old.commit()
    old.close()

    with Ledger(path) as led:
        assert led.get_meta("schema_version") == "2" and led.get_meta("config") == "abc123"
        assert led.completed_rounds() == [0] and led.round_stage(1) == "sampled"
        qs = {q.id: q for q in led.queries()}
        assert [qs[i].status for i in range(1, 9)] == ["labelled", "labelled", "infeasible", "infeasible",
                                                       "failed", "labelled", "labelled", "pending"]
        assert qs[1].value == 0.25 and qs[2].value == 0.9 and qs[6].value == 10.0
        assert math.isnan(qs[3].value) and qs[4].value == float("-inf") and math.isnan(qs[5].value)
        assert qs[5].error == "assay plate dropped" and qs[5].feasible is False
        assert qs[8].value is None and qs[8].feasible is None and qs[8].labelled_at is None
        assert [q.id for q in led.pending()] == [8] and led.num_labelled() == 7
        designs, values, feasible = led.labelled_arrays()
        assert designs == ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG"]
        assert values.dtype == np.float64 and np.isnan(values[[2, 4]]).all() and values[3] == -np.inf
        assert feasible.tolist() == [True, True, False, False, False, True, True]
        with pytest.raises(LedgerError, match="already labelled"):
            led.record([1], [1.0], [True])
        led.record([8], [0.5], [True])  # the pending row is labelled as usual
        assert led.add_queries(2, ["III"], "s") == [21]  # no id handed out before is reused

    conn = sqlite3.connect(path)
    assert {t for (t,) in conn.execute("SELECT typeof(value) FROM queries")} == {"real", "null"}
    columns = {name: kind for _, name, kind, *_ in conn.execute("PRAGMA table_info(queries)")}
    assert columns["value"] == "REAL" and columns["status"] == "TEXT"
    assert conn.execute("SELECT max(value) FROM queries").fetchone()[0] == 10.0
    indexes = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"queries_round", "queries_status"} <= indexes
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='queries_v1'").fetchone()[0] == 0
    conn.close()
    with Ledger(path) as led:  # a second open finds version 2 and changes nothing
        assert [q.status for q in led.queries()][-2:] == ["labelled", "pending"]


def test_migration_is_all_or_nothing(tmp_path, monkeypatch):
    import seiko.ledger as ledger_module

    path = tmp_path / "ledger.sqlite"
    write_v1(path, V1_ROWS)
    calls = []

    def fail_on_third(*args):
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("disk pulled")
        return real_status(*args)

    real_status = ledger_module.label_status
    monkeypatch.setattr(ledger_module, "label_status", fail_on_third)
    with pytest.raises(RuntimeError, match="disk pulled"):
        Ledger(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"
    assert conn.execute("SELECT value FROM queries WHERE id=4").fetchone()[0] == "-inf"
    conn.close()
    monkeypatch.setattr(ledger_module, "label_status", real_status)
    with Ledger(path) as led:
        assert led.get_meta("schema_version") == "2" and len(led.queries()) == 8


def test_unknown_schema_version_is_refused_in_one_line(tmp_path):
    path = tmp_path / "ledger.sqlite"
    write_v1(path, V1_ROWS[:1], version="7")
    with pytest.raises(LedgerError, match="schema_version 7, expected 2") as err:
        Ledger(path)
    assert "\n" not in str(err.value)


def _as_version_1(path):
    """Rewrite a seiko ledger in the version-1 format (TEXT values, no status), as an old run left it."""
    new = sqlite3.connect(path)
    queries = new.execute("SELECT id, round, design, value, status, feasible, error, labelled_at "
                          "FROM queries ORDER BY id").fetchall()
    rounds = new.execute("SELECT round, stage FROM rounds").fetchall()
    meta = new.execute("SELECT key, value FROM meta WHERE key != 'schema_version'").fetchall()
    new.close()
    rows = [(id_, rnd, design, None if status == "pending" else repr(math.nan if v is None else v),
             feasible, error, labelled) for id_, rnd, design, v, status, feasible, error, labelled in queries]
    v1 = path.with_name("v1.sqlite")
    write_v1(v1, rows, rounds, meta)
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    os.replace(v1, path)
    return queries


class _Stop(BaseException):
    """Not an Exception, so call_oracle does not record it as a failed batch: the run dies."""


def test_resume_after_migration_buys_no_label_twice(tiny, tmp_path):
    from helpers import TINY_FUNCTION

    from seiko.api import compose, run
    from seiko.domains.protein import EhrlichOracle

    function = EhrlichOracle(**TINY_FUNCTION)
    calls: list[list[str]] = []
    first_run = True

    def oracle(designs):
        """First run: call 2 fails (a failed batch), call 4 kills the run mid-round 1. The first
        design of every batch gets a NaN label, so NaN goes through the migration too."""
        calls.append(list(designs))
        if first_run and len(calls) == 2:
            raise RuntimeError("assay plate dropped")
        if first_run and len(calls) == 4:
            raise _Stop
        return [math.nan, *function(designs[1:])]

    cfg = tiny + ["strategy=greedy", "budget.per_round=[16,16]"]  # batches of 8: 2 calls a round
    with pytest.raises(_Stop):
        run(compose(cfg), tmp_path, oracle=oracle)
    before = _as_version_1(tmp_path / "ledger.sqlite")
    pending = [design for _, _, design, _, status, *_ in before if status == "pending"]
    assert len(pending) == 8 and {row[4] for row in before} >= {"labelled", "failed", "pending"}

    calls.clear()
    first_run = False
    summary = run(compose(cfg + ["resume=true"]), tmp_path, oracle=oracle)
    assert summary["status"] == "finished" and summary["queries"] == 32
    assert sorted(d for batch in calls for d in batch) == sorted(pending)  # only the pending ones
    with Ledger(tmp_path / "ledger.sqlite") as led:
        assert led.get_meta("schema_version") == "2" and not led.pending()
        assert led.completed_rounds() == [0, 1]
        after = {q.id: q for q in led.queries()}
    for id_, _, design, v, status, _, error, labelled in before:
        if status != "pending":
            q = after[id_]
            assert (q.design, q.status, q.error, q.labelled_at) == (design, status, error, labelled)
            assert q.value == v or (v is None and math.isnan(q.value))
