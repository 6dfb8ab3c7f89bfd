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
        assert led.get_meta("schema_version") == "1"
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
