"""The results store: one row per run, in SQLite by default or any SQLAlchemy URL."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (JSON, Column, Float, Integer, MetaData, String, Table, Text, create_engine,
                        delete, event, insert, inspect, select, text)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from .errors import UsageError
from .records import RunRecord

#: 2 added the claims table (create_all adds it to a version-1 store: no row changes);
#: 3 added runs.budget_params, 4 runs.outcomes (MIGRATIONS adds the columns; older rows keep NULL).
SCHEMA_VERSION = 4

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("run_id", String(32), primary_key=True),
    Column("spec_key", String(64), index=True, nullable=False),  # same run, same key: for --resume
    Column("suite", String(64), nullable=False),
    Column("task", String(128), nullable=False),
    Column("group", String(64)),
    Column("method", String(64), nullable=False),
    Column("backbone", String(256), nullable=False),
    Column("budget", String(64)),
    Column("budget_params", Integer),  # the budget in parameters; trainable_params / this is the share reached
    Column("budget_reached", Integer),
    Column("size", JSON),
    Column("trainable_params", Integer),
    Column("head_params", Integer),
    Column("total_params", Integer),
    Column("hparams", JSON),
    Column("settings", JSON),  # epochs, batch size, image size, ... as run
    Column("seed", Integer),
    Column("data_fraction", Float),
    Column("phase", String(16)),
    Column("metric", String(32)),
    Column("val_metric", Float),
    Column("test_metric", Float),
    Column("train_seconds", Float),
    Column("train_samples_per_s", Float),
    Column("eval_samples_per_s", Float),
    Column("merged_eval_samples_per_s", Float),
    Column("peak_memory_mb", Float),
    Column("adapter_bytes", Integer),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("details", JSON),  # what one task kind adds: parse failures of generated answers, ...
    Column("env", JSON),
    Column("created_at", String(32), nullable=False),
    Column("outcomes", Text),  # final runs: per test example, right/wrong or squared error (peftbench.outcomes)
)

# A unit of work (a tuning trial slot or a final run) that a worker is running now; the row is
# deleted in the transaction that stores the unit's record. See peftbench.claims.
claims = Table(
    "claims", metadata,
    Column("key", String(64), primary_key=True),  # the unit's spec_key
    Column("owner", String(160), nullable=False),  # machine:pid:token of the worker
    Column("heartbeat", Float, nullable=False),  # time.time() of the owner's last sign of life
)

meta = Table(
    "peftbench_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256)),
)

FIELDS = [c.name for c in runs.columns]

#: version -> the statements that bring a store of the version before it up to it
MIGRATIONS = {3: ["ALTER TABLE runs ADD COLUMN budget_params INTEGER"],
              4: ["ALTER TABLE runs ADD COLUMN outcomes TEXT"]}


def store_url(location: str) -> str:
    """A SQLAlchemy URL as given, or a file path turned into a SQLite URL."""
    if "://" in location:
        return location
    return f"sqlite:///{Path(location).expanduser().resolve()}"


#: what another process can cause for a moment: a busy database, or the same tables being
#: created at the same time (SQLite creates tables outside transactions)
TRANSIENT = (OperationalError, IntegrityError, ProgrammingError)


def retrying(work, attempts: int = 4, pause: float = 0.5, transient=TRANSIENT):
    """Run ``work``, again after a pause while it fails with a ``transient`` error."""
    for attempt in range(attempts):
        try:
            return work()
        except transient:
            if attempt == attempts - 1:
                raise
            time.sleep(pause * (attempt + 1))


def _sqlite_file(url: str) -> str | None:
    """The file of a plain SQLite URL; None for other databases, memory and ``file:`` URIs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return database


def beside(location: str, out: str) -> Path:
    """The folder for a sweep's files: beside a SQLite store, else the output folder."""
    database = _sqlite_file(store_url(location))
    return Path(database).parent if database is not None else Path(out)


def peek_finished(location: str) -> set[str]:
    """The spec keys a store holds, read without creating, migrating or writing anything (a dry
    run's): empty where there is no store yet."""
    url = store_url(location)
    database = _sqlite_file(url)
    if database is not None and not Path(database).exists():
        return set()
    try:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                if not inspect(conn).has_table(runs.name):
                    return set()
                return set(conn.execute(select(runs.c.spec_key)).scalars())
        finally:
            engine.dispose()
    except (SQLAlchemyError, ModuleNotFoundError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise UsageError(f"cannot open the results store {location}: {reason}") from exc


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer of a sweep
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Store:
    def __init__(self, location: str, create: bool = True):
        self.url = store_url(location)
        database = _sqlite_file(self.url)
        if database is not None:
            path = Path(database)
            if not create and not path.exists():
                raise UsageError(f"no results store at {path} (run 'peftbench run' first, or pass --store)")
            if create:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise UsageError(f"cannot create the store folder {path.parent}: {exc.strerror}") from exc
        try:
            self.engine = create_engine(self.url)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            retrying(lambda: self._prepare(location))
            if create:
                self._check_writable()
        except (SQLAlchemyError, ModuleNotFoundError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise UsageError(f"cannot open the results store {location}: {reason}") from exc

    def _prepare(self, location: str) -> None:
        """Check the schema version before writing anything; create or migrate the tables."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # workers starting together create the tables once
                conn.execute(text("SELECT pg_advisory_xact_lock(7311)"))
            version = None
            if inspect(conn).has_table(meta.name):
                version = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            if version is not None and int(version) > SCHEMA_VERSION:
                raise UsageError(f"store {location} has schema version {version}, newer than this "
                                 f"peftbench's {SCHEMA_VERSION}: upgrade peftbench")
            had_runs = inspect(conn).has_table(runs.name)
            metadata.create_all(conn)  # adds the tables a version-1 store lacks
            if had_runs and version is not None:
                for step in range(int(version) + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS.get(step, []):
                        conn.execute(text(statement))
            if version is None:
                conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(version) < SCHEMA_VERSION:
                conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))

    def _check_writable(self) -> None:
        """Fail now, not after the first run, on a store that cannot take a record; the probe
        write is rolled back."""
        with self.engine.connect() as conn:
            probe = conn.begin()
            try:
                conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=meta.c.value))
            except OperationalError as exc:
                raise UsageError(f"the results store {self.url} is read-only: "
                                 f"{str(exc.orig).splitlines()[0]}") from exc
            finally:
                probe.rollback()

    def add(self, record: RunRecord | dict, release: str | None = None) -> None:
        """Write one run (a RunRecord, or a dict of its fields) in a single transaction: it is either
        stored whole or not at all.

        ``release`` names the claim (the owner's) that the same transaction deletes, so a unit
        is never both recorded and still claimed, nor released without its record.
        """
        record = record.row() if isinstance(record, RunRecord) else record
        row = {key: record.get(key) for key in FIELDS}
        row["created_at"] = row["created_at"] or datetime.now(timezone.utc).isoformat(timespec="seconds")
        json.dumps(row)  # a value that cannot be stored fails here, before the transaction

        def write():
            with self.engine.begin() as conn:
                conn.execute(insert(runs).values(**row))
                if release is not None:
                    conn.execute(delete(claims).where(claims.c.key == row["spec_key"], claims.c.owner == release))
        # past SQLite's busy timeout another writer still holds the lock: the whole transaction again
        retrying(write, transient=(OperationalError,))

    def records(self, **where) -> list[dict]:
        query = select(runs).order_by(runs.c.created_at, runs.c.run_id)
        for key, value in where.items():
            query = query.where(runs.c[key] == value)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def finished(self) -> set[str]:
        """spec keys of runs that ended (ok or failed), for --resume: a run is stored only when it ends."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(runs.c.spec_key)).scalars())

    def has(self, spec_key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(runs.c.run_id).where(runs.c.spec_key == spec_key).limit(1)).first() is not None
