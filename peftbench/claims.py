"""Claims on units of work, so that several workers share one sweep and none runs a unit twice.

A worker claims a unit by inserting its key into the store's ``claims`` table: the primary key
lets exactly one insert succeed. The claim is deleted in the transaction that stores the
unit's record (``Store.add(..., release=owner)``). A worker that dies leaves its claim behind;
another worker takes it over when the owner's process is gone (same machine) or its
heartbeat is older than ``STALE_AFTER`` seconds (another machine), and runs the unit anew.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from enum import Enum
from pathlib import Path

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .store import Store, claims, runs

HEARTBEAT_EVERY = 15.0
STALE_AFTER = 120.0


class Outcome(Enum):
    CLAIMED = "claimed"
    DONE = "done"  # the store holds the unit's record
    BUSY = "busy"  # a live worker runs it


def this_machine() -> str:
    """The host name, plus the boot id: containers on different machines may share a name."""
    boot = Path("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}/{boot.read_text().strip()[:8] if boot.exists() else '-'}"


def _alive(owner: str) -> bool | None:
    """Whether the owner's process runs; None when it ran on another machine."""
    machine, pid, _token = owner.rsplit(":", 2)
    if machine != this_machine():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class Claims:
    """This worker's claims in one store."""

    def __init__(self, store: Store):
        self.store = store
        self.owner = f"{this_machine()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def claim(self, key: str) -> tuple[Outcome, bool]:
        """Try to claim ``key``. With CLAIMED comes whether it was taken over from a dead owner
        (whose Optuna trial, if it asked for one, is then failed: peftbench.tuning.fail_slot)."""
        now = time.time()
        try:
            with self.store.engine.begin() as conn:
                conn.execute(insert(claims).values(key=key, owner=self.owner, heartbeat=now))
                # after the insert: its lock orders this read after any record stored meanwhile
                if conn.execute(select(runs.c.run_id).where(runs.c.spec_key == key).limit(1)).first():
                    raise _AlreadyDone
            return Outcome.CLAIMED, False
        except _AlreadyDone:
            return Outcome.DONE, False
        except IntegrityError:
            pass
        with self.store.engine.connect() as conn:
            held = conn.execute(select(claims).where(claims.c.key == key)).first()
        if held is None:  # released since: recorded, or its owner gave it up
            return self.claim(key) if not self.store.has(key) else (Outcome.DONE, False)
        if not self._stale(held.owner, held.heartbeat, now):
            return Outcome.BUSY, False
        with self.store.engine.begin() as conn:  # compare and swap: one taker wins
            taken = conn.execute(update(claims)
                                 .where(claims.c.key == key, claims.c.owner == held.owner,
                                        claims.c.heartbeat == held.heartbeat)
                                 .values(owner=self.owner, heartbeat=now)).rowcount
        return (Outcome.CLAIMED, True) if taken else (Outcome.BUSY, False)

    @staticmethod
    def _stale(owner: str, heartbeat: float, now: float) -> bool:
        alive = _alive(owner)
        return not alive if alive is not None else now - heartbeat > STALE_AFTER

    def release_all(self) -> None:
        """Give up every claim of this worker (it was interrupted, perhaps between claiming a unit
        and starting it): each can be run again at once."""
        with self.store.engine.begin() as conn:
            conn.execute(delete(claims).where(claims.c.owner == self.owner))

    def release(self, key: str) -> None:
        """Give a claim up without a record (the run was interrupted): it can be run again."""
        with self.store.engine.begin() as conn:
            conn.execute(delete(claims).where(claims.c.key == key, claims.c.owner == self.owner))

    def _update(self, key: str, **values) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(update(claims).where(claims.c.key == key, claims.c.owner == self.owner)
                         .values(heartbeat=time.time(), **values))

    def heartbeat(self, key: str) -> Heartbeat:
        return Heartbeat(self, key)


class _AlreadyDone(Exception):
    """Rolls the claim back: the unit was recorded before this worker got to it."""


class Heartbeat:
    """While a unit runs, a thread refreshes its claim so other machines see the worker alive."""

    def __init__(self, owner: Claims, key: str):
        self.owner, self.key = owner, key
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat {key[:8]}")

    def _beat(self):
        while not self.stop.wait(HEARTBEAT_EVERY):
            try:
                self.owner._update(self.key)
            except Exception:  # a missed beat only ages the claim; the next one may get through
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
