"""Render the results store as a markdown leaderboard: one table per suite and backbone."""

from __future__ import annotations

import statistics
from collections import defaultdict

from .store import Store


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt_metric(values: list[float], percent: bool) -> str:
    mean, std = mean_std(values)
    scale = 100 if percent else 1
    text = f"{mean * scale:.1f}" if percent else f"{mean:.4g}"
    return text + (f" ± {std * scale:.1f}" if percent and len(values) > 1 else "")


def fmt_count(n: float) -> str:
    return f"{n / 1e6:.3f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _table(rows: list[dict]) -> list[str]:
    tasks = sorted({r["task"] for r in rows})
    percent = rows[0]["metric"] == "accuracy"
    by_method: dict[tuple, list[dict]] = defaultdict(list)  # (method, budget) -> runs
    for r in rows:
        by_method[(r["method"], r["budget"])].append(r)
    header = ["method", "budget", *tasks, "mean", "trainable", "train/s", "eval/s", "peak MB", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (method, budget), group in sorted(by_method.items()):
        fixed = all(not r["size"] for r in group)  # linear, full: reference points, no budget
        short = any(r["budget_reached"] == 0 for r in group)
        cells = [method + (" †" if short else ""), "-" if fixed else budget]
        task_means = []
        for task in tasks:
            values = [r["test_metric"] for r in group if r["task"] == task]
            cells.append(fmt_metric(values, percent) if values else "-")
            if values:
                task_means.append(statistics.fmean(values))
        cells.append(fmt_metric([statistics.fmean(task_means)], percent) if len(task_means) == len(tasks) else "-")
        cells.append(fmt_count(statistics.fmean(r["trainable_params"] for r in group)))
        cells.append(f"{statistics.fmean(r['train_samples_per_s'] for r in group):.0f}")
        cells.append(f"{statistics.fmean(r['eval_samples_per_s'] for r in group):.0f}")
        cells.append(f"{statistics.fmean(r['peak_memory_mb'] for r in group):.0f}")
        cells.append(str(len({r["seed"] for r in group})))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _settings(settings: dict) -> str:
    size = f", {settings['image_size']} px" if settings.get("image_size") else ""
    caps = "".join(f", at most {settings[k]} {k.split('_')[1]} examples"
                   for k in ("max_train_examples", "max_eval_examples") if settings.get(k))
    scoring = {"loglik": ", answers scored by the log-likelihood of each option's label",
               "text": ", answers scored by the log-likelihood of each option's text",
               "generate": ", answers generated greedily and parsed"}.get(settings.get("eval_mode")) if not size else ""
    tuning = (f"{settings['trials']} Optuna trials on train -> val, then" if settings.get("trials")
              else "the methods' default hyper-parameters,")
    seeds = settings.get("seeds", 1)
    return (f"{tuning} {seeds} seed{'s' if seeds != 1 else ''} on train+val; "
            f"{settings['epochs']} epochs, batch {settings['batch_size']}{size}{caps}{scoring}")


def most_tuned(records: list[dict]) -> list[dict]:
    """Per cell, the final runs that followed the most trials: a study continued with a larger
    --trials supersedes its earlier final runs, which stay in the store."""
    def cell(r):
        return r["suite"], r["task"], r["method"], r["budget"], r["backbone"], r["data_fraction"]

    most: dict[tuple, int] = defaultdict(int)
    for r in records:
        most[cell(r)] = max(most[cell(r)], r["settings"].get("trials", 0))
    return [r for r in records if r["settings"].get("trials", 0) == most[cell(r)]]


def render(store: Store) -> str:
    records = most_tuned([r for r in store.records(status="ok") if r["phase"] == "final"])
    out = ["# peftbench leaderboard", ""]
    if not records:
        return "\n".join(out + ["No finished runs in the store yet: run `peftbench run` first.", ""])
    out += ["Test accuracy (%) per task, mean ± std over seeds; trainable parameters exclude the "
            "classifier head, which every method trains; throughput in samples per second.", ""]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["suite"], r["backbone"])].append(r)
    for (suite, backbone), rows in sorted(groups.items()):
        commits = sorted({str(r["env"].get("git_commit")) for r in rows})
        versions = rows[-1]["env"]["packages"]
        settings = sorted({_settings(r["settings"]) for r in rows})
        out += [f"## {suite} on {backbone}", "",
                f"Backbone `{backbone}`; {'; '.join(settings)}; device {rows[-1]['env']['device']}; "
                f"commit {', '.join(commits)}; " + ", ".join(f"{k} {v}" for k, v in versions.items() if v), ""]
        out += _table(rows) + [""]
        if any(r["budget_reached"] == 0 for r in rows):
            out += ["† cannot reach the budget: ran at its largest size (see trainable).", ""]
    failed = store.records(status="failed")
    if failed:
        out += ["## Failed runs", "", "| suite | task | method | phase | seed | error |", "|---|---|---|---|---|---|"]
        out += [f"| {r['suite']} | {r['task']} | {r['method']} | {r['phase']} | {r['seed']} | {r['error']} |"
                for r in failed]
        out += [""]
    return "\n".join(out)
