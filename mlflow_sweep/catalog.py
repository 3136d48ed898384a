"""Which sweeps a tracking store holds, read without opening MLflow's store where that is safe.

Opening MLflow's SQLAlchemy store costs 1.2–2 s (SQLAlchemy, alembic, a schema check) before
the first query, more than ``status`` may take in all (its budget is ``import mlflow`` + 1 s on
3,000 trials, docs/behaviour.md). A sweep is found by three tables that have kept their shape
since MLflow 1.x (``runs``, ``tags``, ``experiments``), so for a local sqlite store this module
reads them with the standard library, read-only. Anything unexpected (another schema, a locked or odd file) gives None, and
``tracking`` asks MlflowClient instead: this is a shortcut, never the only way.

It also says where a local store would be, so that a command that needs an existing sweep can
say "no sweep found" instead of creating an empty store. No mlflow import here.
"""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import quote

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"


@dataclass(frozen=True)
class SweepRun:
    """A sweep's parent run as the store knows it, from MLflow's client or from the sqlite file."""

    run_id: str
    experiment_id: str
    experiment_name: str
    name: str
    start_time: float | None  # Unix seconds
    tags: Mapping[str, str] = field(default_factory=dict)


def local_store(uri: str) -> Path | None:
    """The file or directory a local tracking URI names (sqlite file, file store), else None.

    Args:
        uri: a tracking URI with any relative sqlite path already made absolute.
    """
    if uri.startswith(SQLITE):
        return None if ":memory:" in uri else Path(uri[len(SQLITE):].split("?", 1)[0])
    if uri.startswith("file:"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return Path(url2pathname(urlparse(uri).path))
    if uri.startswith(("/", "./", "../", "~")):
        return Path(uri).expanduser()
    return None


def read_sweeps(uri: str, *, sweep_id: str | None = None, limit: int | None = None) -> list[SweepRun] | None:
    """Sweeps in a local sqlite store, newest first; or the run ``sweep_id`` (any run, sweep or not).

    None means "ask MLflow": the store is not a local sqlite file or could not be read as expected.

    Args:
        uri: the tracking URI (``sqlite:////abs/path/mlflow.db``).
        sweep_id: a parent run ID; None lists active sweeps in active experiments.
        limit: at most this many sweeps.
    """
    path = local_store(uri) if uri.startswith(SQLITE) else None
    if path is None or not path.is_file():
        return None
    try:
        with _connect(path) as conn:
            rows = _runs(conn, sweep_id, limit)
            tags = _sweep_tags(conn, [row[0] for row in rows])
    except sqlite3.Error as exc:  # another schema, a lock, a half-written file: MLflow knows best
        log.debug("reading %s directly failed (%s); asking MLflow", path, exc)
        return None
    return [SweepRun(run_id, str(exp_id), exp_name or "", name or "", start / 1000 if start else None,
                     tags.get(run_id, {})) for run_id, exp_id, exp_name, name, start in rows]


def _connect(path: Path) -> sqlite3.Connection:
    """Read-only, so this never creates, migrates or locks the store for writers."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=5)
    conn.execute("PRAGMA query_only = ON")
    return conn


_RUNS = ("SELECT r.run_uuid, r.experiment_id, e.name, r.name, r.start_time FROM runs r "
         "JOIN experiments e ON e.experiment_id = r.experiment_id ")


def _runs(conn: sqlite3.Connection, sweep_id: str | None, limit: int | None) -> list[tuple]:
    if sweep_id is not None:
        return conn.execute(_RUNS + "WHERE r.run_uuid = ?", (sweep_id,)).fetchall()
    return conn.execute(
        _RUNS + "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'sweep' AND t.value = 'True' "
        "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' "
        "ORDER BY r.start_time DESC, r.run_uuid LIMIT ?", (-1 if limit is None else limit,)).fetchall()


def _sweep_tags(conn: sqlite3.Connection, run_ids: list[str]) -> dict[str, dict[str, str]]:
    """The sweep's own tags (``sweep``, ``sweep.*``) of each run."""
    tags: dict[str, dict[str, str]] = {run_id: {} for run_id in run_ids}
    for start in range(0, len(run_ids), 500):  # SQLite limits the number of bound parameters
        chunk = run_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        query = (f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks}) "
                 "AND (key = 'sweep' OR key LIKE 'sweep.%')")
        for run_id, key, value in conn.execute(query, chunk):
            tags[run_id][key] = value
    return tags
