"""The notes' numbers come from the store: claims are filled in, and one that no longer holds stops
generation with a message naming it, before anything is written."""

import re

import numpy as np
import pytest

from peftbench.cli import main
from peftbench.notes import ClaimError, fill
from peftbench.outcomes import encode
from peftbench.store import Store
from test_leaderboard import hits, record


@pytest.fixture
def store(store_path):
    store = Store(store_path)
    n = 1_000
    order = np.arange(n)
    for seed in (0, 1, 2):
        for task in ("digits", "textures"):
            for method, right in (("lora", 800), ("hora", 900), ("vera", 801)):
                right += seed * (3 if method == "vera" else 1)
                store.add(record("quick", task, "natural", method, seed, right / n, seeds=3,
                                 outcomes=encode(hits(n, right, order))))
    return store


def test_claims_are_filled_from_the_store(store):
    text = fill("HoRA {{score quick/digits hora: best}} ({{seeds quick/digits hora}}), "
                "{{delta quick/mean hora vs lora: better}} over LoRA; "
                "VeRA {{delta quick/mean vera vs lora: no verdict}}, "
                "{{interval quick/textures vera: not best}}; {{family quick}} tests; "
                "MDE {{mde quick/mean}}, {{needed quick/mean 0.5}} seeds for half a point; "
                "LoRA's error is {{ratio quick/digits lora vs hora}} of HoRA's accuracy; "
                "{{examples quick/digits}} test examples, {{setting quick seeds}} seeds", store, "lora")
    assert text.startswith("HoRA 90.1 (90.0, 90.1, 90.2), +10.0 [+9.9, +10.1] over LoRA; VeRA +0.3 [")
    assert "; 6 tests;" in text and "MDE ±" in text and "0.89 of HoRA" in text
    assert re.search(r"MDE ±1\.\d, \d seeds for half a point", text)
    assert text.endswith("; 1,000 test examples, 3 seeds")
    assert "{{" not in text


@pytest.mark.parametrize("claim, message", [
    ("{{delta quick/mean vera vs lora: better}}", "no longer holds: the leaderboard says no verdict (+0.3 ["),
    ("{{score quick/digits lora: best}}", "no longer holds: the leaderboard says not best (80.1)"),
    ("{{score quick/cifar lora}}", "no column 'cifar'"),
    ("{{score nope/digits lora}}", "no suite 'nope'"),
    ("{{score quick/digits dora}}", "no final runs of 'dora'"),
    ("{{score}}", "is not of the form"),
    ("{{what quick/digits lora}}", "unknown kind of claim 'what'"),
])
def test_a_claim_that_fails_names_itself(store, claim, message):
    with pytest.raises(ClaimError, match="claim .*" + re.escape(message)):
        fill(f"Some prose {claim} more prose", store, "lora")


def test_the_leaderboard_command_stops_on_a_failed_claim_and_writes_nothing(store, store_path, tmp_path, capsys):
    notes = tmp_path / "NOTES.md"
    notes.write_text("VeRA beats LoRA by {{delta quick/mean vera vs lora: better}}.\n")
    out = tmp_path / "board"
    assert main(["leaderboard", "--store", store_path, "--out", f"{out}/", "--notes", str(notes)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "{{delta quick/mean vera vs lora: better}} no longer holds" in error[0]
    assert not out.exists()
    notes.write_text("VeRA and LoRA: {{delta quick/mean vera vs lora: no verdict}}.\n")
    assert main(["leaderboard", "--store", store_path, "--out", f"{out}/", "--notes", str(notes)]) == 0
    assert "VeRA and LoRA: +0.3 [" in (out / "README.md").read_text()
