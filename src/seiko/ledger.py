"""Durable record of every oracle query and label.

Oracle labels are expensive (a wet lab, a docking run), so each one is written to
SQLite and committed the moment it exists: a crash loses nothing already recorded,
and a resumed run can see exactly what was bought and never buy it twice.
"""

from __future__ import annotations

import csv
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = "2"
BUSY_SECONDS = 60.0  # how long a process waits for another's write (every rank opens the ledger)
STAGES = ("sampled", "labelled", "fitted", "finetuned")

# value is REAL so SQL and pandas see numbers (max(value) is the numeric max). SQLite stores a
# REAL NaN as NULL, so the status column, not value, says what a row is: NULL with status
# infeasible/failed reads back as NaN, and a row is pending exactly while labelled_at IS NULL
# (the CHECK keeps status and labelled_at in step). -inf and +inf are stored as REAL as they are.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    round INTEGER NOT NULL,
    design TEXT NOT NULL,
    strategy TEXT NOT NULL,
    value REAL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'labelled', 'infeasible', 'failed')),
    feasible INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    labelled_at REAL,
    CHECK ((status = 'pending') = (labelled_at IS NULL))
);
CREATE INDEX IF NOT EXISTS queries_round ON queries(round);
CREATE INDEX IF NOT EXISTS queries_status ON queries(status);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY, stage TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "id, round, design, strategy, value, status, feasible, error, created_at, labelled_at"
_TRUE, _FALSE = {"1", "true", "t", "yes", "y"}, {"0", "false", "f", "no", "n"}


@dataclass(frozen=True)
class Query:
    id: int
    round: int
    design: str  # the design as text (a sequence, a SMILES, an image path)
    strategy: str
    value: float | None  # None while pending; NaN or -inf allowed (infeasible / failed)
    status: str  # pending, labelled (finite, feasible), infeasible, or failed (oracle error)
    feasible: bool | None  # None while pending
    error: str | None  # oracle error message for a failed batch
    created_at: float  # unix time
    labelled_at: float | None


class LedgerError(Exception):
    """A refused ledger operation (unknown id, overwrite of a label, bad CSV row)."""


def _query(row: tuple) -> Query:
    id_, rnd, design, strategy, value, status, feasible, error, created, labelled = row
    if status == "pending":
        value = None
    elif value is None:  # how SQLite hands back a stored NaN
        value = math.nan
    return Query(id_, rnd, design, strategy, None if value is None else float(value), status,
                 None if feasible is None else bool(feasible), error, created, labelled)


def label_status(value: float, feasible: bool, error: str | None) -> str:
    """The status of an answered query: failed if the oracle's batch failed, labelled for a
    finite value the oracle calls feasible, infeasible otherwise (NaN, -inf, +inf, flag False)."""
    if error is not None:
        return "failed"
    return "labelled" if feasible and math.isfinite(value) else "infeasible"


def _real(value: float) -> float | None:
    """The value as stored: NULL for NaN, said explicitly rather than left to SQLite."""
    return None if math.isnan(value) else value


class Ledger:
    """SQLite store of queries, labels, round stages and run metadata."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every write is
        # committed explicitly and multi-row writes are all-or-nothing.
        self._conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_SECONDS)
        self._use_wal()
        self._conn.execute("PRAGMA synchronous=FULL")  # survive power loss, not just crashes
        with self._tx():  # not executescript(): it would COMMIT outside our transaction
            has_meta = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            if not has_meta:  # a new ledger
                self._create_tables()
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            elif self.get_meta("schema_version") == "1":  # checked inside the transaction, so
                self._migrate_from_v1()  # of ranks opening it at once one migrates, the rest see 2
        version = self.get_meta("schema_version")
        if version != SCHEMA_VERSION:
            self._conn.close()
            raise LedgerError(f"{path}: schema_version {version}, expected {SCHEMA_VERSION} "
                              f"(written by a different seiko version?)")

    def _create_tables(self) -> None:
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                self._conn.execute(stmt)

    def _migrate_from_v1(self) -> None:
        """Version 1 kept value as TEXT (a float's repr, 'nan' for NaN) and had no status.

        SQLite cannot change a column's type, and its CAST reads 'nan' and '-inf' as 0, so the
        rows are parsed here and copied into a fresh queries table; ids and the AUTOINCREMENT
        counter carry over, so no id is ever reused. Runs inside the caller's transaction: a
        crash mid-way leaves the version-1 ledger as it was.
        """
        c = self._conn
        c.execute("DROP INDEX IF EXISTS queries_round")  # it would follow the renamed table
        c.execute("ALTER TABLE queries RENAME TO queries_v1")
        self._create_tables()
        rows = []
        for id_, rnd, design, strategy, text, feasible, error, created, labelled in c.execute(
                "SELECT id, round, design, strategy, value, feasible, error, created_at, "
                "labelled_at FROM queries_v1 ORDER BY id"):
            try:
                value = float(text) if text is not None else math.nan
            except ValueError:
                value = math.nan  # unparsable text was never a usable label
            status = ("pending" if labelled is None
                      else label_status(value, bool(feasible), error))
            rows.append((id_, rnd, design, strategy, _real(value), status, feasible, error,
                         created, labelled))
        c.executemany(f"INSERT INTO queries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        seq = c.execute("SELECT seq FROM sqlite_sequence WHERE name='queries_v1'").fetchone()
        c.execute("DROP TABLE queries_v1")
        if seq is not None:
            c.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name='queries'", seq)
        c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (SCHEMA_VERSION,))

    def _use_wal(self) -> None:
        """Switch to write-ahead logging, so readers (other ranks, `seiko sample`) never block a write.

        Two processes opening a new ledger at once (DDP ranks) can both try the switch; SQLite
        then answers "database is locked" at once, without its busy wait, so we wait here.
        """
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    self._conn.close()
                    raise
                time.sleep(0.05)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE so two processes cannot interleave checks."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- queries and labels ---------------------------------------------------------
    def add_queries(self, round: int, designs: Sequence[str], strategy: str) -> list[int]:
        """Record designs as pending before the oracle is asked, so none goes unaccounted."""
        now = time.time()
        with self._tx() as c:
            return [c.execute("INSERT INTO queries (round, design, strategy, status, created_at) "
                              "VALUES (?, ?, ?, 'pending', ?)",
                              (int(round), str(d), strategy, now)).lastrowid
                    for d in designs]

    def record(self, ids: Sequence[int], values: Sequence[float], feasible: Sequence[bool],
               error: str | None = None) -> None:
        """Label pending queries; refuses unknown or already-labelled ids (a bought label is
        never overwritten) and writes all rows or none. ``error`` marks the whole batch failed
        (the oracle raised or answered malformed output); see ``label_status``."""
        ids, feasible = [int(i) for i in ids], [bool(f) for f in feasible]
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError) as e:
            raise LedgerError(f"record: non-numeric value ({e})") from None
        if not len(ids) == len(values) == len(feasible):
            raise LedgerError(f"record: {len(ids)} ids, {len(values)} values, "
                              f"{len(feasible)} feasible flags")
        if len(set(ids)) != len(ids):
            raise LedgerError("record: duplicate query id in one call")
        now = time.time()
        with self._tx() as c:
            for i in ids:
                self._check_pending(i)
            c.executemany("UPDATE queries SET value=?, status=?, feasible=?, error=?, labelled_at=? "
                          "WHERE id=?", [(_real(v), label_status(v, f, error), int(f), error, now, i)
                                         for i, v, f in zip(ids, values, feasible)])

    def _check_pending(self, id_: int) -> None:
        """Raise LedgerError unless id_ is a known, still-pending query."""
        row = self._conn.execute("SELECT status FROM queries WHERE id=?", (id_,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown query id: {id_}")
        if row[0] != "pending":
            raise LedgerError(f"query already labelled: {id_}")

    def queries(self, round: int | None = None, *, labelled: bool | None = None) -> list[Query]:
        """Queries by id; ``labelled=True`` means answered (status labelled, infeasible or
        failed), ``labelled=False`` means pending."""
        where, args = [], []
        if round is not None:
            where.append("round = ?")
            args.append(int(round))
        if labelled is not None:
            where.append("status != 'pending'" if labelled else "status = 'pending'")
        sql = f"SELECT {_COLUMNS} FROM queries" + (" WHERE " + " AND ".join(where) if where else "")
        return [_query(r) for r in self._conn.execute(sql + " ORDER BY id", args)]

    def pending(self, round: int | None = None) -> list[Query]:
        return self.queries(round, labelled=False)

    def num_labelled(self) -> int:
        return self._conn.execute(
            "SELECT COUNT(*) FROM queries WHERE status != 'pending'").fetchone()[0]

    def labelled_arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """All labelled designs with values (float64, NaN kept) and feasibility, by id."""
        qs = self.queries(labelled=True)
        return ([q.design for q in qs], np.array([q.value for q in qs], dtype=np.float64),
                np.array([q.feasible for q in qs], dtype=bool))

    # -- rounds and metadata ---------------------------------------------------------
    def set_round_stage(self, round: int, stage: str) -> None:
        """Mark how far a round got, so a resumed run restarts at the right step."""
        if stage not in STAGES:
            raise LedgerError(f"unknown stage {stage!r}; expected one of {STAGES}")
        with self._tx() as c:
            c.execute("INSERT INTO rounds VALUES (?, ?, ?) ON CONFLICT(round) DO UPDATE "
                      "SET stage=excluded.stage, updated_at=excluded.updated_at",
                      (int(round), stage, time.time()))

    def round_stage(self, round: int) -> str | None:
        row = self._conn.execute("SELECT stage FROM rounds WHERE round=?", (int(round),)).fetchone()
        return None if row is None else row[0]

    def completed_rounds(self) -> list[int]:
        return [r for (r,) in self._conn.execute(
            "SELECT round FROM rounds WHERE stage='finetuned' ORDER BY round")]

    def set_meta(self, key: str, value: str) -> None:
        """Store run metadata, e.g. a config hash, to refuse resuming a different run."""
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- CSV hand-off to a human-run oracle (a wet lab) -------------------------------
    def export_pending_csv(self, path: str | os.PathLike, round: int | None = None, columns=None) -> int:
        """Write pending queries as id,round,design for an offline oracle to fill in.

        ``columns(ids, designs)`` may add columns a person needs to label them (an image's file
        and prompt: ``Domain.export_columns``); ``import_labels_csv`` ignores them."""
        rows = self.pending(round)
        extra = columns([q.id for q in rows], [q.design for q in rows]) if columns is not None else {}
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "round", "design", *extra])
            w.writerows([q.id, q.round, q.design, *(values[i] for values in extra.values())]
                        for i, q in enumerate(rows))
        return len(rows)

    def import_labels_csv(self, path: str | os.PathLike) -> int:
        """Import id,value[,feasible] rows (extra columns ignored). The whole file is
        validated first, so a bad row writes nothing; blank/nan/-inf value = infeasible."""
        ids: list[int] = []
        values: list[float] = []
        feas: list[bool] = []
        seen: set[int] = set()
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if "id" not in header or "value" not in header:
                raise LedgerError(f"{path}: line 1: header must contain 'id' and 'value', "
                                  f"got {header}")
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                try:
                    id_ = int((row["id"] or "").strip())
                    text = (row["value"] or "").strip()
                    value = float(text) if text else math.nan
                    flag = (row.get("feasible") or "").strip().lower()
                    if flag and flag not in _TRUE | _FALSE:
                        raise ValueError(f"bad feasible {flag!r}")
                    if id_ in seen:
                        raise LedgerError(f"duplicate id {id_}")
                    self._check_pending(id_)
                except (ValueError, LedgerError) as e:
                    raise LedgerError(f"{where}: {e}") from None
                seen.add(id_)
                ids.append(id_)
                values.append(value)
                feas.append(flag in _TRUE if flag else math.isfinite(value))
        self.record(ids, values, feas)
        return len(ids)

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
