"""The vocabulary of a sweep as types: task kinds, modalities, phases, statuses, and the run record.

The enums are ``str`` subclasses, so they compare equal to, and are stored and serialised as,
their plain values ("final", "ok", ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class Word(str, Enum):
    """An enum member that prints as its value ("image", not "Modality.IMAGE")."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Kind(Word):
    """How a task trains and scores (peftbench.kinds)."""

    CLASSIFY = "classify"  # (input, label) pairs through a trained head; accuracy
    CHOICE = "choice"  # multiple-choice questions answered by a causal language model; accuracy
    REGRESS = "regress"  # the adapted model's own output is the prediction; mean squared error


class Modality(Word):
    IMAGE = "image"
    TEXT = "text"
    TOKENS = "tokens"  # sequences of vectors (the synthetic attention student)


class Phase(Word):
    TUNE = "tune"  # an Optuna trial: train -> val, never tested
    FINAL = "final"  # the selected configuration on train+val with one seed, tested once


class Status(Word):
    OK = "ok"
    FAILED = "failed"
    PRUNED = "pruned"


@dataclass(frozen=True)
class RunRecord:
    """One run, as the store's ``runs`` table holds it (a test keeps the two in step)."""

    run_id: str
    spec_key: str
    suite: str
    task: str
    group: str | None
    method: str
    backbone: str
    budget: str | None
    budget_params: int | None
    budget_reached: int | None
    size: dict
    trainable_params: int | None
    head_params: int | None
    total_params: int | None
    hparams: dict
    settings: dict
    seed: int
    data_fraction: float
    phase: Phase
    metric: str
    val_metric: float | None
    test_metric: float | None
    train_seconds: float | None
    train_samples_per_s: float | None
    eval_samples_per_s: float | None
    merged_eval_samples_per_s: float | None
    peak_memory_mb: float | None
    adapter_bytes: int | None
    status: Status
    error: str | None
    details: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    created_at: str | None = None
    outcomes: str | None = None  # final runs: per test example (peftbench.outcomes)

    def row(self) -> dict:
        """The store's row: plain values only."""
        row = asdict(self)
        row["phase"], row["status"] = self.phase.value, self.status.value
        return row
