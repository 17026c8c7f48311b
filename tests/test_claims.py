"""Claims: one worker per unit; a dead worker's unit is taken over; a recorded one is done."""

import time

import pytest
from conftest import stub_record
from sqlalchemy import insert, select

from peftbench.claims import STALE_AFTER, Claims, Outcome, this_machine
from peftbench.store import Store, claims


@pytest.fixture
def store(store_path):
    return Store(store_path)


def record(key):
    return stub_record(key[:8] + "-run", key)


def plant(store, owner, heartbeat, key="unit"):
    with store.engine.begin() as conn:
        conn.execute(insert(claims).values(key=key, owner=owner, heartbeat=heartbeat))


def test_one_worker_gets_a_unit_and_its_record_makes_it_done(store):
    first, second = Claims(store), Claims(store)
    assert first.claim("unit") == (Outcome.CLAIMED, False)
    assert second.claim("unit") == (Outcome.BUSY, False)
    store.add(record("unit"), release=first.owner)
    with store.engine.connect() as conn:
        assert conn.execute(select(claims)).first() is None  # released with the record, atomically
    assert second.claim("unit") == (Outcome.DONE, False)
    assert first.claim("unit") == (Outcome.DONE, False)


def test_a_released_unit_can_be_claimed_again(store):
    first, second = Claims(store), Claims(store)
    first.claim("unit")
    first.release("unit")
    assert second.claim("unit") == (Outcome.CLAIMED, False)


def test_a_dead_process_on_this_machine_loses_its_claim_to_a_taker_that_knows_it_took_over(store):
    plant(store, f"{this_machine()}:999999999:dead", time.time())
    assert Claims(store).claim("unit") == (Outcome.CLAIMED, True)
    assert Claims(store).claim("unit") == (Outcome.BUSY, False)  # now held by a live process


def test_another_machine_keeps_its_claim_until_its_heartbeat_is_stale(store):
    plant(store, "elsewhere/abcd1234:42:token", time.time(), key="fresh")
    plant(store, "elsewhere/abcd1234:43:token", time.time() - STALE_AFTER - 1, key="stale")
    worker = Claims(store)
    assert worker.claim("fresh") == (Outcome.BUSY, False)
    assert worker.claim("stale") == (Outcome.CLAIMED, True)


def test_the_heartbeat_refreshes_the_claim(store, monkeypatch):
    import peftbench.claims as module

    monkeypatch.setattr(module, "HEARTBEAT_EVERY", 0.05)
    worker = Claims(store)
    worker.claim("unit")
    with store.engine.connect() as conn:
        before = conn.execute(select(claims.c.heartbeat)).scalar()
    with worker.heartbeat("unit"):
        time.sleep(0.3)
    with store.engine.connect() as conn:
        assert conn.execute(select(claims.c.heartbeat)).scalar() > before


def test_an_interrupted_worker_gives_back_every_claim_it_holds_and_no_one_elses(store):
    worker, other = Claims(store), Claims(store)
    assert worker.claim("a")[0] is Outcome.CLAIMED and worker.claim("b")[0] is Outcome.CLAIMED
    assert other.claim("c")[0] is Outcome.CLAIMED
    worker.release_all()
    assert other.claim("a") == (Outcome.CLAIMED, False) and other.claim("b") == (Outcome.CLAIMED, False)
    assert worker.claim("c") == (Outcome.BUSY, False)  # the other worker's claim stays
