"""The benchmark's results as text: a table for the terminal, markdown for READMEs."""

from __future__ import annotations

from .. import defaults


def _columns(rows) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def format_report(result: dict) -> str:
    s = result["settings"]
    ref = s.get("reference", defaults.BENCH_REFERENCE)
    shape = f"{s['image_size']} px" if s["image_size"] else f"{s['seq_len']} tokens"
    title = (f"bench {s['backbone']}: {shape}, batch {s['batch_size']}, budget {s['budget']} = "
             f"{s['budget_params']:,} parameters, median of {s['steps']} training steps and {s['infer_steps']} "
             f"inference batches after {s['warmup']} warm-up, {s['device']}, {s['threads']} thread(s)")
    lines = [title, ""]
    header = ("method", "trainable", "step ms", "samples/s", f"/{ref}", "/floor", "peak MB", f"mem/{ref}",
              "infer/s", "merged/s", "unmerged/base", "merged/base")
    table = [header]

    def f(value, spec):
        return "-" if value is None else format(value, spec)

    for r in result["rows"]:
        table.append((r["label"] + (" (ref)" if r["kind"] == "reference" else ""), f"{r['trainable_params']:,}",
                      f(1000 * r["train_step_s"], ".0f"), f(r["train_samples_per_s"], ".1f"),
                      f(r["step_vs_lora"], ".2f"), f(r["step_vs_floor"], ".2f"), f(r["peak_memory_mb"], ".0f"),
                      f(r["memory_vs_lora"], ".2f"), f(r["infer_unmerged_samples_per_s"], ".1f"),
                      f(r["infer_merged_samples_per_s"], ".1f"), f(r["unmerged_vs_base"], ".3f"),
                      f(r["merged_vs_base"], ".3f")))
    lines += _columns(table)
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
    lines += ["", "targets:"]
    lines += _columns([(t["name"], f"{t['value']:.3f}", f"<= {t['limit']:.2f}", "met" if t["met"] else "MISSED")
                       for t in result["targets"]])
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The measured table and the targets as markdown (for READMEs)."""
    def f(value, spec):
        return "–" if value is None else format(value, spec)

    ref = result["settings"].get("reference", defaults.BENCH_REFERENCE)
    header = (f"| method | trainable | step ms | samples/s | / {ref} | / floor | peak MB | infer/s | merged/s "
              "| unmerged / base | merged / base |")
    rows = [header, "|" + "---|" * 11]
    for r in result["rows"]:
        label = f"{r['label']} (reference)" if r["kind"] == "reference" else r["label"]
        rows.append(f"| {label} | {r['trainable_params']:,} | {1000 * r['train_step_s']:.0f} | "
                    f"{r['train_samples_per_s']:.1f} | {r['step_vs_lora']:.2f} | {r['step_vs_floor']:.2f} | "
                    f"{r['peak_memory_mb']:.0f} | {f(r['infer_unmerged_samples_per_s'], '.1f')} | "
                    f"{f(r['infer_merged_samples_per_s'], '.1f')} | {f(r['unmerged_vs_base'], '.3f')} | "
                    f"{f(r['merged_vs_base'], '.3f')} |")
    rows += ["", "| target | measured | limit | |", "|---|---|---|---|"]
    rows += [f"| {t['name']} | {t['value']:.3f} | ≤ {t['limit']:.2f} | {'met' if t['met'] else '**missed**'} |"
             for t in result["targets"]]
    return "\n".join(rows)
