"""From measured times to medians, throughputs, ratios and the targets they are held to.

Ratios (method / reference, method / floor, merged / base) carry over between machines where
absolute figures do not. Each row keeps its raw times, so every ratio can be recomputed; the
ratio columns keep the names ``step_vs_lora`` and ``memory_vs_lora`` whatever the reference
(``settings["reference"]`` names it), so results files stay comparable.
"""

from __future__ import annotations

import statistics

from .. import defaults
from .contenders import Contender

#: limits the benchmark checks: ratios of median step times, and the harness's share of a run
TARGETS = {"challenger_vs_reference": 1.10, "reference_vs_floor": 1.15, "merged_vs_base": 1.03,
           "run_overhead": 0.05}


def measured(cs: list[Contender], inference: dict) -> list[dict]:
    """One row per contender: its raw step times and its inference times."""
    rows = []
    for c in cs:
        row = {"label": c.label, "kind": c.kind, "method": c.method.name if c.method else c.label,
               "size": c.size, "trainable_params": c.trainable_params, "peak_memory_mb": c.peak_memory_mb,
               "train_step_times": c.step_times}
        times = inference.get(c.label, {})
        row["merged_max_abs_diff"] = times.get("merged_max_abs_diff")
        for variant in ("unmerged", "merged", "base"):
            row[f"infer_{variant}_times"] = times.get(variant)
        rows.append(row)
    return rows


def paired_ratio(times: list[float] | None, reference: list[float] | None) -> float | None:
    """Median over rounds of time / the reference's time in the same round: the two ran back to back, so
    a machine that is busier in one round than in another slows both and the ratio holds."""
    if not times or not reference:
        return None
    return statistics.median(t / r for t, r in zip(times, reference))


def summarise(settings: dict, rows: list[dict], overhead: dict | None, env: dict | None = None) -> dict:
    """Medians, throughputs and ratios from the measured times, and the targets they are held to."""
    batch = settings["batch_size"]
    ref_name = settings.get("reference", defaults.BENCH_REFERENCE)
    challenger = settings.get("challenger", defaults.BENCH_CHALLENGER)
    ref = next(row for row in rows if row["method"] == ref_name)
    floor = next(row for row in rows if row["label"] == "floor")
    for row in rows:
        step = statistics.median(row["train_step_times"])
        row.update(train_step_s=step, train_samples_per_s=batch / step,
                   step_vs_lora=paired_ratio(row["train_step_times"], ref["train_step_times"]),
                   step_vs_floor=paired_ratio(row["train_step_times"], floor["train_step_times"]),
                   memory_vs_lora=row["peak_memory_mb"] / ref["peak_memory_mb"])
        for variant in ("unmerged", "merged", "base"):
            times = row[f"infer_{variant}_times"]
            row[f"infer_{variant}_samples_per_s"] = batch / statistics.median(times) if times else None
        row["unmerged_vs_base"] = paired_ratio(row["infer_unmerged_times"], row["infer_base_times"])
        row["merged_vs_base"] = paired_ratio(row["infer_merged_times"], row["infer_base_times"])

    targets = []
    same_rank = [r for r in rows if r["method"] == challenger and r["size"] == {"r": ref["size"].get("r")}]
    for row in same_rank or [r for r in rows if r["method"] == challenger][:1]:
        targets.append(_target(f"{row['label']} / {ref['label']} train step", row["step_vs_lora"],
                               TARGETS["challenger_vs_reference"]))
    targets.append(_target(f"{ref['label']} / floor train step", ref["step_vs_floor"], TARGETS["reference_vs_floor"]))
    for row in rows:
        if row["merged_vs_base"] is not None:
            targets.append(_target(f"{row['label']} merged / base inference", row["merged_vs_base"],
                                   TARGETS["merged_vs_base"]))
    if overhead is not None and "error" not in overhead:
        targets.append(_target("harness share of run wall time", overhead["overhead"], TARGETS["run_overhead"]))
    return {"settings": settings, "rows": rows, "run_overhead": overhead, "targets": targets, "env": env or {}}


def _target(name: str, value: float, limit: float) -> dict:
    return {"name": name, "value": value, "limit": limit, "met": value <= limit}
