"""The benchmark's results as text: a table for the terminal, markdown for READMEs, both built as
pandas frames and rendered by tabulate (peftbench.tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import defaults, tables

if TYPE_CHECKING:  # pandas loads with the first table: the command line's parser stays quick
    import pandas as pd


def _f(value, spec):
    return None if value is None else format(value, spec)


def _measured(result: dict, ref: str, label) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([{
        "method": label(r), "trainable": f"{r['trainable_params']:,}", "step ms": _f(1000 * r["train_step_s"], ".0f"),
        "samples/s": _f(r["train_samples_per_s"], ".1f"), f"/{ref}": _f(r["step_vs_lora"], ".2f"),
        "/floor": _f(r["step_vs_floor"], ".2f"), "peak MB": _f(r["peak_memory_mb"], ".0f"),
        f"mem/{ref}": _f(r["memory_vs_lora"], ".2f"), "infer/s": _f(r["infer_unmerged_samples_per_s"], ".1f"),
        "merged/s": _f(r["infer_merged_samples_per_s"], ".1f"), "unmerged/base": _f(r["unmerged_vs_base"], ".3f"),
        "merged/base": _f(r["merged_vs_base"], ".3f"),
    } for r in result["rows"]])


def _targets(result: dict, missed: str) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([{"target": t["name"], "measured": f"{t['value']:.3f}", "limit": f"<= {t['limit']:.2f}",
                          "": "met" if t["met"] else missed} for t in result["targets"]])


def format_report(result: dict) -> str:
    s = result["settings"]
    ref = s.get("reference", defaults.BENCH_REFERENCE)
    shape = f"{s['image_size']} px" if s["image_size"] else f"{s['seq_len']} tokens"
    title = (f"bench {s['backbone']}: {shape}, batch {s['batch_size']}, budget {s['budget']} = "
             f"{s['budget_params']:,} parameters, median of {s['steps']} training steps and {s['infer_steps']} "
             f"inference batches after {s['warmup']} warm-up, {s['device']}, {s['threads']} thread(s)")
    lines = [title, "", tables.text(_measured(result, ref, lambda r: r["label"] + (" (ref)" if r["kind"] == "reference"
                                                                                   else "")))]
    o = result["run_overhead"]
    if o and "error" in o:
        lines += ["", f"harness overhead not measured: {o['error']}"]
    elif o:
        method = o.get("sweep", {}).get("methods", ref)
        lines += ["", (f"peftbench run of {method} on {o['task']}: {o['wall_s']:.1f} s wall against "
                       f"{o['compute_s']:.1f} s of steps ({o['train_steps']} training steps, {o['eval_examples']} "
                       f"evaluated examples): run wall / step time {o['wall_vs_compute']:.3f}; its training loop "
                       f"/ its steps {o['train_loop_vs_steps']:.3f}; outside its training and evaluation loops "
                       f"{o['outside_loops_s']:.1f} s ({o['outside_loops_share']:.1%} of the wall time)")]
    if o and "fixed_s" in o:
        lines += ["", "fixed costs of that run (s): " + ", ".join(f"{part.replace('_', ' ')} {seconds:.2f}"
                                                                  for part, seconds in o["fixed_s"].items())
                  + " (plan: once per process)"]
    feed = result.get("loader")
    if feed and "error" in feed:
        lines += ["", f"loader not measured: {feed['error']}"]
    elif feed:
        lines += ["", (f"loader: {feed['task']} training split, batch {feed['batch_size']}, {feed['workers']} "
                       f"decoding worker(s): {feed['samples_per_s']:,.0f} samples/s alone, "
                       f"{feed['vs_train_step']:.1f}x {ref}'s training step ({feed['train_samples_per_s']:.0f} "
                       f"samples/s){'' if feed['vs_train_step'] >= 1 else ': the loader is the bottleneck'}")]
    p = result.get("precision")
    if p:
        lines += ["", (f"precision: {p['method']} training step {1000 * p['fp32_step_s']:.0f} ms in fp32, "
                       f"{1000 * p['bf16_step_s']:.0f} ms in bf16 autocast: bf16 / fp32 {p['bf16_vs_fp32']:.2f} "
                       f"(paired median; what --precision auto picks between)")]
    lines += ["", "targets:", tables.text(_targets(result, "MISSED"))]
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The measured table and the targets as markdown (for READMEs)."""
    ref = result["settings"].get("reference", defaults.BENCH_REFERENCE)
    measured = _measured(result, ref, lambda r: f"{r['label']} (reference)" if r["kind"] == "reference" else r["label"])
    return tables.markdown(measured.drop(columns=[f"mem/{ref}"])) + "\n\n" + tables.markdown(
        _targets(result, "**missed**"))
