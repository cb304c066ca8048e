"""Build history in SQLite under state_dir: what went where, when, by whom, and its log.

Every build, rollback, ``--run`` and unlock is a row, numbered per service (1, 2, 3 …
like Jenkins), with the notifications sent about it (``deliveries``). The engine
records it through :class:`HistoryRecorder`, a sink that sits beside the front end's
sink, so TUI and headless builds are recorded alike.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from relconsole.errors import RelconsoleError
from relconsole.events import (
    BatchChanged,
    BuildFinished,
    BuildStarted,
    CommitResolved,
    Event,
    HostFinished,
    Output,
    Sink,
    StageFinished,
    Switched,
)
from relconsole.lock import who
from relconsole.state import STATE_DIR_REMEDY, private_dir
from relconsole.text import printable

#: The history's file in state_dir.
FILE_NAME = "history.sqlite3"

#: The console output kept per build: the most recent bytes win.
LOG_CAP_BYTES = 4 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    number INTEGER NOT NULL,
    action TEXT NOT NULL,           -- build, rollback, run, unlock
    who TEXT NOT NULL,              -- user@machine
    trigger TEXT NOT NULL,          -- tui, headless
    branch TEXT,
    sha TEXT,
    subject TEXT,
    release TEXT,
    hosts TEXT NOT NULL DEFAULT '[]',
    started REAL NOT NULL,
    duration REAL,
    result TEXT NOT NULL,           -- running, success, failed, cancelled, rolled back, interrupted
    error TEXT,
    stages TEXT NOT NULL DEFAULT '{}',
    host_results TEXT NOT NULL DEFAULT '{}',
    log TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    machine TEXT,
    command TEXT,
    deliveries TEXT,
    UNIQUE (service, number)
);
"""

_SUMMARY = (
    "number, service, action, who, trigger, branch, sha, subject, release, hosts, "
    "started, duration, result, error, command, deliveries"
)


class HistoryError(RelconsoleError):
    """The history file cannot be opened or written; the message says which and why."""


#: Columns added since the first schema, added to older files when opened (new files
#: have them from the start: see ``_SCHEMA``).
_ADDED_COLUMNS = {
    "pid": "INTEGER",
    "machine": "TEXT",
    "command": "TEXT",  # what a run ran on every host
    "deliveries": "TEXT",  # JSON: the notifications about this row and how they went
}
#: Columns holding JSON.
_JSON_COLUMNS = ("hosts", "stages", "host_results", "deliveries")


def _missing_columns(db: sqlite3.Connection) -> list[str]:
    """The columns added since the first schema that the file's table lacks."""
    have = {row[1] for row in db.execute("PRAGMA table_info(builds)")}
    return [name for name in _ADDED_COLUMNS if name not in have]


class History:
    """The history file of one state_dir. Opening it also marks the runs of this
    machine whose process is gone (kill -9, a crash) as interrupted."""

    def __init__(self, state_dir: Path):
        self.path = private_dir(state_dir) / FILE_NAME
        #: Something the operator should hear once (a corrupt file moved aside).
        self.warning: Optional[str] = None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # locked, read-only, cannot open
                raise self._error(exc) from None
            kept = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, kept)
            self.warning = (
                f"{self.path} was damaged ({exc}); it was moved to {kept} and a new "
                "history was started"
            )
            self._db = self._open()
        self._lock = threading.Lock()
        self._mark_interrupted()

    def _open(self) -> sqlite3.Connection:
        try:
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise self._error(exc) from None
        db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            if _missing_columns(db):  # a new or older file; a current one is never written
                # In one write transaction: two processes opening it at once (the
                # console's history read and its build's recorder) must not both
                # create or migrate it ("duplicate column name" lost a build's row).
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(_SCHEMA)
                    for name in _missing_columns(db):
                        db.execute(f"ALTER TABLE builds ADD COLUMN {name} {_ADDED_COLUMNS[name]}")
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except BaseException:
            db.close()
            raise
        return db

    def _error(self, exc: Exception) -> HistoryError:
        why = getattr(exc, "strerror", None) or str(exc)
        return HistoryError(f"cannot use the history {self.path}: {why}; {STATE_DIR_REMEDY}")

    def _mark_interrupted(self) -> None:
        """A row still "running" whose process on this machine is gone never ended."""
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, pid FROM builds WHERE result = 'running' AND machine = ?",
                    (socket.gethostname(),),
                ).fetchall()
                for row_id, pid in rows:
                    if pid and not _alive(pid):
                        self._db.execute(
                            "UPDATE builds SET result = 'interrupted', error = ? WHERE id = ?",
                            ("the relconsole process ended before the run did", row_id),
                        )
        except sqlite3.OperationalError:  # read-only: reading the history still works
            pass

    def close(self) -> None:
        with self._lock:  # never under a query running in another thread
            self._db.close()

    def start(
        self,
        *,
        service: str,
        action: str,
        who: str,
        trigger: str,
        branch: Optional[str],
        hosts: list[str],
        command: Optional[str] = None,
    ) -> tuple[int, int]:
        """A new row, numbered next for ``service`` (safe across processes)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                number = self._db.execute(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE service = ?", (service,)
                ).fetchone()[0]
                cur = self._db.execute(
                    "INSERT INTO builds (service, number, action, who, trigger, branch, hosts, "
                    "started, result, pid, machine, command) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                    (
                        service,
                        number,
                        action,
                        who,
                        trigger,
                        branch,
                        json.dumps(hosts),
                        time.time(),
                        os.getpid(),
                        socket.gethostname(),
                        command,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        assert cur.lastrowid is not None
        return cur.lastrowid, number

    def update(self, row_id: int, **fields) -> None:
        for key in _JSON_COLUMNS:
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        names = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE builds SET {names} WHERE id = ?", (*fields.values(), row_id))

    def add_delivery(self, row_id: int, delivery: dict) -> None:
        """Append how a notification about row ``row_id`` went to its ``deliveries``."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._db.execute(
                    "SELECT deliveries FROM builds WHERE id = ?", (row_id,)
                ).fetchone()
                deliveries = json.loads(found[0]) if found and found[0] else []
                deliveries.append(delivery)
                self._db.execute(
                    "UPDATE builds SET deliveries = ? WHERE id = ?",
                    (json.dumps(deliveries), row_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def list(self, service: Optional[str] = None, limit: int = 100) -> list[dict]:
        """Newest first."""
        query = f"SELECT {_SUMMARY} FROM builds"
        args: tuple = ()
        if service:
            query += " WHERE service = ?"
            args = (service,)
        query += " ORDER BY started DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [_row(r) for r in rows]

    def get(self, service: str, number: int) -> Optional[dict]:
        with self._lock:
            r = self._db.execute(
                "SELECT * FROM builds WHERE service = ? AND number = ?", (service, number)
            ).fetchone()
        return _row(r) if r else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _row(r: sqlite3.Row) -> dict:
    data = dict(r)
    for key in _JSON_COLUMNS:
        if key in data and isinstance(data[key], str):
            data[key] = json.loads(data[key])
    if "deliveries" in data and data["deliveries"] is None:
        data["deliveries"] = []
    return data


class HistoryRecorder:
    """A sink that records one build or rollback as it happens."""

    def __init__(self, history: History, trigger: str, who: str):
        self.history = history
        self.trigger = trigger
        self.who = who
        self.row_id: Optional[int] = None
        self.number: Optional[int] = None
        self._lines: collections.deque[str] = collections.deque()
        self._bytes = 0
        self._dropped = 0
        self._stages: dict[str, dict] = {}
        self._hosts: dict[str, dict] = {}
        self._host_parts: dict[tuple[str, str], HostFinished] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Output):
            self._append(f"[{event.where}] {event.line}")
        elif isinstance(event, BuildStarted):
            self.row_id, self.number = self.history.start(
                service=event.service,
                action=event.action,
                who=self.who,
                trigger=self.trigger,
                branch=event.branch,
                hosts=list(event.hosts),
                command=event.command,
            )
            what = f"`{event.command}`" if event.command else f"({event.branch})"
            self._append(
                f"{event.action} #{self.number} of {event.service} {what} "
                f"by {self.who} on {', '.join(event.hosts)}"
            )
        elif isinstance(event, BatchChanged):
            self._append(f"[{event.stage}] {event.describe()}")
        elif isinstance(event, CommitResolved) and self.row_id:
            self.history.update(self.row_id, sha=event.sha, subject=event.subject)
        elif isinstance(event, Switched) and self.row_id:
            # At the moment it happens: a run killed later still says what went where.
            self.history.update(self.row_id, release=event.release)
        elif isinstance(event, StageFinished):
            self._stages[event.stage] = {
                "ok": event.ok,
                "seconds": round(event.seconds, 3),
                "error": event.error,
            }
            self._append(
                f"<-- {event.stage} {'ok' if event.ok else 'FAILED: ' + str(event.error)}"
                f" ({event.seconds:.1f}s)"
            )
        elif isinstance(event, HostFinished):
            whole = self._host_parts[(event.stage, event.host)] = event.after(
                self._host_parts.get((event.stage, event.host))
            )
            result = {"ok": whole.ok, "seconds": round(whole.seconds, 3), "error": whole.error}
            if whole.exit_code is not None:
                result["exit"] = whole.exit_code
            self._hosts.setdefault(event.host, {})[event.stage] = result
        elif isinstance(event, BuildFinished) and self.row_id:
            self.history.update(
                self.row_id,
                result=event.result.value,
                duration=event.seconds,
                error=event.error,
                release=event.release,
                sha=event.sha,
                stages=self._stages,
                host_results=self._hosts,
                log=self.log(),
            )

    def delivered(self, delivery: dict) -> None:
        """Note how a notification about this row went (from the postman's thread, maybe
        after the run ended)."""
        if self.row_id is not None:
            self.history.add_delivery(self.row_id, delivery)

    def _append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            self._bytes += len(line) + 1
            while self._bytes > LOG_CAP_BYTES and len(self._lines) > 1:
                self._bytes -= len(self._lines.popleft()) + 1
                self._dropped += 1

    def log(self) -> str:
        with self._lock:
            head = [f"[... {self._dropped} earlier lines dropped ...]"] if self._dropped else []
            return "\n".join(head + list(self._lines))


def history_table(rows: list[dict]) -> list[list[str]]:
    """``--history`` rows as table cells, newest first."""
    table = [
        [
            "SERVICE",
            "#",
            "ACTION",
            "RESULT",
            "BRANCH",
            "SHA",
            "RELEASE",
            "STARTED",
            "SECONDS",
            "WHO",
            "TRIGGER",
            "COMMAND",
        ]
    ]
    for r in rows:
        table.append(
            [  # printable: a history may be older than today's validation rules
                r["service"],
                str(r["number"]),
                r["action"],
                r["result"],
                r["branch"] or "",
                (r["sha"] or "")[:12],
                r["release"] or "",
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])),
                "" if r["duration"] is None else f"{r['duration']:.1f}",
                printable(r["who"]),
                r["trigger"],
                printable(r.get("command") or ""),
            ]
        )
    return table


def not_recorded(state_dir: Path, exc: Exception) -> str:
    """The line saying a run is not in the history, naming the file and what to do.

    Opening the history raises errors that say both already; a write refused later
    (a read-only file: "attempt to write a readonly database") says neither.
    """
    if isinstance(exc, RelconsoleError):
        return f"history not recorded: {exc}"
    return f"history not recorded: {state_dir / FILE_NAME}: {exc}; {STATE_DIR_REMEDY}"


class Recording:
    """The front end's sink plus a :class:`HistoryRecorder`: every event reaches both.

    History trouble never stops a deploy: it is said once, as a line of the run's
    first stage (or of the event that could not be recorded), and the run goes on.
    """

    def __init__(self, state_dir: Path, sink: Sink, trigger: str):
        self.sink = sink
        self.state_dir = state_dir
        self.problem: list[str] = []
        self.recorder: Optional[HistoryRecorder] = None
        try:
            history = History(state_dir)
            self.recorder = HistoryRecorder(history, trigger, who())
            if history.warning:
                self.problem.append(history.warning)
        except (sqlite3.Error, OSError, RelconsoleError) as exc:
            self.problem.append(not_recorded(state_dir, exc))

    def __call__(self, event: Event) -> None:
        sink, problem, recorder = self.sink, self.problem, self.recorder
        sink(event)
        if isinstance(event, BuildStarted) and problem and event.stages:
            sink(Output(stage=event.stages[0], line=problem[0], stream="err"))
        if recorder is None:
            return
        try:
            recorder(event)
        except sqlite3.Error as exc:
            if not problem:
                problem.append(not_recorded(self.state_dir, exc))
                # The first write is the run's row, at BuildStarted (a read-only file).
                stage = getattr(event, "stage", None) or (
                    event.stages[0] if isinstance(event, BuildStarted) and event.stages else None
                )
                if stage is not None:
                    sink(Output(stage=stage, line=problem[0], stream="err"))

    def delivered(self, delivery: dict) -> None:
        """Record how a notification about this run went; never raises."""
        if self.recorder is not None:
            try:
                self.recorder.delivered(delivery)
            except sqlite3.Error:
                pass


def recording(state_dir: Path, sink: Sink, trigger: str) -> Recording:
    """``sink`` and the history, as one sink (see :class:`Recording`)."""
    return Recording(state_dir, sink, trigger)


def last_runs(history: History, services: Iterable[str]) -> dict[str, dict]:
    """Each service's newest build or rollback (unlocks and ad-hoc commands are not
    deploys)."""
    found = {}
    for name in services:
        for row in history.list(name, limit=10):
            if row["action"] in ("build", "rollback"):
                found[name] = row
                break
    return found


def record_delivery(state_dir: Path, row_id: int, delivery: dict) -> None:
    """Note a delivery on a row whose recorder is gone (an unlock's); never raises."""
    try:
        history = History(state_dir)
        try:
            history.add_delivery(row_id, delivery)
        finally:
            history.close()
    except (sqlite3.Error, OSError, RelconsoleError):
        pass
