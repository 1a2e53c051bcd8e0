"""The durable run queue of a lab root: `.lab/queue.db`, one SQLite database in WAL mode.

Why SQLite: every change is one transaction, so the queue survives `kill -9` and power loss whole, and
`BEGIN IMMEDIATE` serialises concurrent writers: three `lab run exp3` started at once each take the write lock in
turn, so each sees what the others queued and no setting is queued twice. A partial unique index
(`jobs_active`) makes "at most one queued or running job per setting" a property of the database itself.

A job row (`jobs`) goes `queued` -> `running` -> `done` (its `result`: succeeded, failed or cancelled), or
`queued` -> `cancelled` (`lab cancel`). Claiming a job gives it a fresh `token`; its supervisor writes its
identity to `.lab/jobs/ID.json` before the program starts (see `lab.runs.local.runner`). An interrupted job goes back to `queued` at its old place. The row keeps what the job needs to run exactly as it was asked for: the resolved settings,
the report's command template (`command`) and the environment of the `lab run` that queued it (so the file is private to its owner: mode 0600). The run
record in the experiment directory stays the truth about runs; the queue only says what is still to do.

`executor` names who runs the job: the local runner takes only `local` jobs; another executor (Slurm) may keep
its own rows here with an `external_id`.

`control` holds queue-wide flags: `stop` (set by `lab stop` and `--stop-on-failure`: the runner starts no other
job; cleared by the next `lab run`).

Schema changes are migrations: append a function to MIGRATIONS, never edit one that has run.

Damage: a `queue.db` that is not a database, is half-written, or is empty although it existed is moved aside
(`queue.db.damaged-TIME`, kept for inspection) and the queue is rebuilt from the run records that say `queued`
(`executor: local`), with one line on stderr saying so. A rebuilt job gets the environment of the command that
rebuilt it (the queued one's environment was in the damaged file).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from lab.core import layout
from lab.runs.record import now_iso
from lab.runs.state import State

TYPE_CHECKING = False  # not typing's: `lab status` reads the queue, and importing typing costs it a millisecond
if TYPE_CHECKING:
    from typing import TypedDict

    class QueueRow(TypedDict):
        """One job of the queue, as `Queue.job` and `Queue.jobs` answer it (the columns of the `jobs` table)."""

        id: int
        experiment: str
        setting: str
        state: str  # queued | running | done | cancelled
        result: str | None  # when done: the State it ended in
        executor: str
        settings: str  # the resolved settings, JSON
        settings_hash: str
        env: str  # the environment of the `lab run` that queued it, JSON
        stop_on_failure: int
        batch: str | None
        queued_at: str
        started_at: str | None
        ended_at: str | None
        attempt: int | None
        pid: int | None
        pgid: int | None
        proc_start: str | None
        boot_id: str | None
        cancel_requested: int
        exit_code: int | None
        external_id: str | None
        token: str | None  # the claim of one start of the job
        cancel_grace: float | None
        lane: str | None  # what a running job holds, JSON (lab.runs.gpus)



def _m001_jobs(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            experiment TEXT NOT NULL,
            setting TEXT NOT NULL,
            state TEXT NOT NULL,                 -- queued | running | done | cancelled
            result TEXT,                         -- when done: succeeded | failed | cancelled | interrupted
            executor TEXT NOT NULL DEFAULT 'local',
            settings TEXT NOT NULL,              -- the resolved settings (JSON) checked when queued
            settings_hash TEXT NOT NULL,
            env TEXT NOT NULL,                   -- the environment of the lab run that queued it (JSON)
            stop_on_failure INTEGER NOT NULL DEFAULT 0,
            batch TEXT,
            queued_at TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            attempt INTEGER,
            pid INTEGER,
            pgid INTEGER,
            proc_start TEXT,
            boot_id TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            external_id TEXT
        );
        CREATE UNIQUE INDEX jobs_active ON jobs(experiment, setting) WHERE state IN ('queued', 'running');
        CREATE INDEX jobs_state ON jobs(state, id);
        CREATE TABLE control (key TEXT PRIMARY KEY, value TEXT);
        """
    )


def _script(db: sqlite3.Connection, sql: str) -> None:
    # Statement by statement: executescript() would commit the migration's transaction half-way.
    for statement in sql.split(";"):
        lines = [line.split("--")[0] for line in statement.splitlines()]
        if "".join(lines).strip():
            db.execute("\n".join(lines))


def _m002_token(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN token TEXT")  # the claim of one start of the job (see claim_next)
    db.execute("ALTER TABLE jobs ADD COLUMN cancel_grace REAL")  # lab stop --now --grace


def _m003_lane(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN lane TEXT")  # what a running job holds: GPUs, share (lab.runs.gpus)


def _m004_command(db: sqlite3.Connection) -> None:
    # The report's command template as it was when the job was queued: the job runs it, not a later edit.
    db.execute("ALTER TABLE jobs ADD COLUMN command TEXT")


MIGRATIONS = [_m001_jobs, _m002_token, _m003_lane, _m004_command]


def _row(row: sqlite3.Row) -> QueueRow:
    """A row of the `jobs` table as a QueueRow (its columns are QueueRow's keys)."""
    return dict(row)  # type: ignore[return-value]


class QueueDamaged(Exception):
    pass


def damaged(error: Exception) -> bool:
    """Whether an error opening the queue means the file is damaged (not merely busy)."""
    if isinstance(error, QueueDamaged):
        return True
    text = str(error).lower()
    return any(w in text for w in ("not a database", "malformed", "corrupt", "no such table"))


class Queue:
    """The queue of one lab root. Cheap to open; one connection per process."""

    def __init__(self, state_dir: Path | str, durable: bool = True):
        self.path = Path(state_dir) / layout.QUEUE_DB
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.healed: str | None = None
        if not self.path.exists():
            self._create()
        try:
            self._open(durable, check=True)
        except (sqlite3.DatabaseError, QueueDamaged) as e:
            if not damaged(e):
                raise  # "database is locked" and the like are not damage
            self._heal(durable, e)

    def _create(self) -> None:
        """Make the database whole under another name, then link it into place: a `queue.db` that exists is
        complete (so an empty or schema-less one is damage, never a queue being made)."""
        tmp = self.path.with_name(f".queue.db.new-{os.getpid()}")
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode = WAL")
                self.db = db
                self._migrate()
            finally:
                db.close()
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another command made it first
        finally:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(f"{tmp}{suffix}")
                except FileNotFoundError:
                    pass

    def _open(self, durable: bool, check: bool) -> None:
        fresh = not self.path.exists()
        if check and self.path.stat().st_size == 0:
            raise QueueDamaged("it is empty")
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            if fresh:
                try:
                    os.chmod(self.path, 0o600)
                except OSError:
                    pass
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA busy_timeout = 60000")
            if check:
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    raise QueueDamaged("it holds no queue")
                problems = [r[0] for r in self.db.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise QueueDamaged(problems[0])
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode = WAL")
            # FULL: every commit is on disk when it returns (what lab run queues survives power loss). The runner
            # uses NORMAL: its commits survive kill -9 and never corrupt the queue, but a power loss may undo the
            # last ones, which crash recovery reconciles with the run records (fsynced files, the truth).
            self.db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._migrate()
        except BaseException:
            self.db.close()
            raise

    def _heal(self, durable: bool, error: Exception) -> None:
        """Move the damaged file aside and rebuild the queue from the run records that say `queued` (one command
        at a time: another may have healed it meanwhile)."""
        import fcntl

        with open(self.path.with_name("queue.heal.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._open(durable, check=True)
                return  # healed by another command meanwhile
            except (sqlite3.DatabaseError, QueueDamaged) as e:
                if not damaged(e):
                    raise
            self._heal_locked(durable, error)

    def _heal_locked(self, durable: bool, error: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"queue.db.damaged-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                pass
        self._create()
        self._open(durable, check=True)
        n = self.rebuild(self.path.parent.parent)
        self.healed = (f"lab: {self.path} was damaged ({error}); kept as {aside.name}, and the queue was rebuilt "
                       f"from the run records: {n} queued job(s)")
        print(self.healed, file=sys.stderr, flush=True)

    def rebuild(self, root: Path) -> int:
        """Queue again every local job whose run record says `queued` (in the order they were queued)."""
        found = []
        experiments = Path(root) / "experiments"
        try:
            exps = sorted(p for p in experiments.iterdir() if p.is_dir())
        except OSError:
            exps = []
        from lab.runs.record import read_record_file

        for exp in exps:
            for path in sorted((exp / "runs").glob("*.json")):
                if path.name.endswith(".settings.json"):
                    continue
                rec = read_record_file(path)
                if not rec or rec.get("state") != State.QUEUED or rec.get("executor", "local") != "local":
                    continue
                if not isinstance(rec.get("settings"), dict):
                    continue
                found.append((str(rec.get("queued_at") or ""), exp.name, path.name[:-5], rec))
        found.sort(key=lambda f: f[0])
        env = dict(os.environ)
        with self.transaction():
            for queued_at, exp, setting, rec in found:
                if self.active(exp, setting) is None:
                    self.db.execute(
                        "INSERT INTO jobs (id, experiment, setting, state, executor, settings, settings_hash, env, queued_at,"
                        " command) VALUES (?, ?, ?, 'queued', 'local', ?, ?, ?, ?, ?)",
                        (rec["job_id"] if isinstance(rec.get("job_id"), int) and self.job(rec["job_id"]) is None else None,
                         exp, setting, json.dumps(rec["settings"]), str(rec.get("settings_hash") or ""), json.dumps(env),
                         queued_at or now_iso(), rec.get("command") if isinstance(rec.get("command"), str) else None),
                    )
        return len(found)

    @classmethod
    def open_existing(cls, state_dir: Path | str) -> "Queue | None":
        """The queue, or None when this lab has never queued anything (reads never create files)."""
        return cls(state_dir) if (Path(state_dir) / layout.QUEUE_DB).exists() else None

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version >= len(MIGRATIONS):
            return
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for i, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(self.db)
                self.db.execute(f"PRAGMA user_version = {i}")

    def transaction(self):
        """`with queue.transaction():` one IMMEDIATE transaction (takes the write lock at once)."""
        return _Transaction(self.db)

    # -- reading ------------------------------------------------------------------------------------------

    def job(self, job_id: int) -> QueueRow | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row else None

    def jobs(self, states: tuple[str, ...] | None = None, executor: str | None = None) -> list[QueueRow]:
        sql, args = "SELECT * FROM jobs", []
        where = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        if executor:
            where.append("executor = ?")
            args.append(executor)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_row(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def active(self, experiment: str, setting: str) -> QueueRow | None:
        row = self.db.execute(
            "SELECT * FROM jobs WHERE experiment = ? AND setting = ? AND state IN ('queued', 'running')",
            (experiment, setting),
        ).fetchone()
        return _row(row) if row else None

    def has_queued(self, executor: str = "local") -> bool:
        return self.db.execute("SELECT 1 FROM jobs WHERE state = 'queued' AND executor = ? LIMIT 1", (executor,)).fetchone() is not None

    # -- writing ------------------------------------------------------------------------------------------

    def insert(self, experiment: str, setting: str, resolved: dict, settings_hash: str, env: dict | None, *,
               executor: str = "local", stop_on_failure: bool = False, batch: str | None = None,
               command: str | None = None) -> int:
        """Queue one job (call inside a transaction, after checking `active`). `command`: the report's template as
        it is now, fixed for the job as its settings are."""
        cur = self.db.execute(
            "INSERT INTO jobs (experiment, setting, state, executor, settings, settings_hash, env, stop_on_failure, batch,"
            " queued_at, command) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
            (experiment, setting, executor, json.dumps(resolved), settings_hash, json.dumps(env), int(stop_on_failure), batch,
             now_iso(), command),
        )
        return cur.lastrowid

    def claim_next(self, token: str, executor: str = "local") -> QueueRow | None:
        """Take the first queued job and mark it running with `token` (this start's claim), in one transaction."""
        with self.transaction():
            row = self.db.execute(
                "SELECT * FROM jobs WHERE state = 'queued' AND executor = ? ORDER BY id LIMIT 1", (executor,)
            ).fetchone()
            if row is None or self.get_flag("stop"):
                return None
            self.db.execute("UPDATE jobs SET state = 'running', started_at = ?, ended_at = NULL, token = ?,"
                            " pid = NULL, pgid = NULL, proc_start = NULL, boot_id = NULL WHERE id = ?",
                            (now_iso(), token, row["id"]))
        return self.job(row["id"])

    def claim(self, job_id: int, token: str, lane: str | None = None) -> QueueRow | None:
        """Mark the queued job `job_id` running with `token` and the lanes it holds (`lane`), in one transaction;
        None when it is no longer queued (cancelled meanwhile) or the queue is stopped: the stop flag is read in the
        same transaction, so once `lab stop` has set it no job starts, whatever the timing, and what it said
        stays queued does."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE jobs SET state = 'running', started_at = ?, ended_at = NULL, token = ?, lane = ?,"
                " pid = NULL, pgid = NULL, proc_start = NULL, boot_id = NULL WHERE id = ? AND state = 'queued'"
                " AND NOT EXISTS (SELECT 1 FROM control WHERE key = 'stop')",
                (now_iso(), token, lane, job_id))
        return self.job(job_id) if cur.rowcount == 1 else None

    def finish(self, job_id: int, result: str, exit_code: int | None = None) -> None:
        self.db.execute(
            "UPDATE jobs SET state = 'done', result = ?, exit_code = ?, ended_at = ?, pid = NULL, pgid = NULL WHERE id = ?",
            (result, exit_code, now_iso(), job_id),
        )

    def requeue(self, job_id: int) -> None:
        """Put a job whose attempt was interrupted back in the queue, at its old place."""
        self.db.execute(
            "UPDATE jobs SET state = 'queued', started_at = NULL, token = NULL, lane = NULL, pid = NULL, pgid = NULL, proc_start = NULL, boot_id = NULL WHERE id = ?",
            (job_id,),
        )

    def unchanged(self, job: dict) -> bool:
        """Whether the row of a running `job` is still as it was read (same start, same supervisor): recovery
        acts only then, inside the transaction that changes the row (a compare-and-set)."""
        row = self.db.execute("SELECT state, token, pid FROM jobs WHERE id = ?", (job["id"],)).fetchone()
        return row is not None and row["state"] == State.RUNNING and row["token"] == job["token"] and row["pid"] == job["pid"]

    def cancel_queued(self, job_id: int) -> bool:
        cur = self.db.execute("UPDATE jobs SET state = 'cancelled', result = 'cancelled', ended_at = ? WHERE id = ? AND state = 'queued'", (now_iso(), job_id))
        return cur.rowcount == 1

    def request_cancel(self, job_id: int, grace: float | None = None) -> None:
        self.db.execute("UPDATE jobs SET cancel_requested = 1, cancel_grace = ? WHERE id = ?", (grace, job_id))

    # -- control flags ------------------------------------------------------------------------------------

    def get_flag(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM control WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_flag(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM control WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT INTO control (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
