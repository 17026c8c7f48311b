"""Where a section's numbers come from: the header (backbone, budget, tuning, recipe, metric,
statistics, commands, machines, versions), the hyper-parameters each final run used and what
selected them, and, where they differ within a section, each row's commit, versions and machine."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pandas as pd

from .board.model import Table
from .budget import FIXED
from .formats import PERCENT, fmt_count, fmt_fraction, fmt_value
from .judging import Columns, fraction_of

#: the packages whose versions the header names
PACKAGES = ("peftbench", "torch", "peft", "timm", "transformers", "optuna", "numpy")
#: the folders whose code generates the page
CODE = ("peftbench", "methods", "tasks")


def _number(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _selected(r: dict, metric: str) -> str:
    selected = (r["details"] or {}).get("selected") or {}
    trials = r["settings"].get("trials", 0)
    if selected.get("by") == "defaults":
        return "the method's defaults (untuned)"
    if selected.get("by") == "val":
        val = selected.get("val_metric")
        score = ""
        if isinstance(val, (int, float)):
            # noisy val targets put every regression trial near the noise floor: show the digits that chose
            score = f", val {fmt_value(val, metric) if metric in PERCENT else f'{val:.6g}'}"
        return f"best on val of {trials} trials (slot {selected.get('slot', '?')}{score})"
    return f"{trials} trials; selection not recorded" if trials else "not recorded"


def hparams_table(rows: list[dict], cols: Columns) -> Table:
    """Per method and budget, the hyper-parameters its final runs used and what selected them;
    tasks that share every value share a row."""
    shared = ("lr", "head_lr", "weight_decay")
    settings = pd.DataFrame.from_records([{
        "method": r["method"], "budget": r["budget"], "task": r["task"],
        "size": ", ".join(f"{k}={v}" for k, v in (r["size"] or {}).items()) or "fixed",
        "lr": _number(r["hparams"]["lr"]) if "lr" in r["hparams"] else "-",
        "head lr": _number(r["hparams"]["head_lr"]) if "head_lr" in r["hparams"] else "-",
        "weight decay": _number(r["hparams"]["weight_decay"]) if "weight_decay" in r["hparams"] else "-",
        "method's own": ", ".join(f"{k}={_number(v)}" for k, v in sorted(r["hparams"].items())
                                  if k not in shared) or "-",
        "trials": str(r["settings"].get("trials", 0)), "selected by": _selected(r, r["metric"]),
    } for r in rows])
    for name, values in _differing(rows).items():
        settings[name] = values
    values = [c for c in settings.columns if c not in ("method", "budget", "task")]
    # the seeds of one task ran one configuration; should they not, every value is shown
    per_task = settings.groupby(["method", "budget", "task"], sort=False)[values].agg(
        lambda v: " / ".join(dict.fromkeys(v)))
    order = {t: i for i, t in enumerate(cols.tasks)}
    grouped = (per_task.reset_index().sort_values(["method", "budget", "task"], key=lambda c: c.map(order)
                                                  if c.name == "task" else c)
               .groupby(["method", "budget", *values], sort=False)["task"].agg(list).reset_index())
    everything = len(cols.tasks)
    grouped["tasks"] = [f"all {everything}" if len(ts) == everything and everything > 1 else ", ".join(ts)
                        for ts in grouped["task"]]
    return Table.of_frame(grouped[["method", "budget", "tasks", *values]], "hparams")


def row_details(rows: list[dict]) -> tuple[tuple[str, str], ...]:
    """What the page shows on demand for one row (a method at a budget): per task the size and
    hyper-parameters its final runs used and what selected them; then their commit, machine and
    package versions."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    out = []
    for task, runs in by_task.items():
        used = dict.fromkeys(", ".join(f"{k}={_number(v)}" for k, v in sorted(r["hparams"].items())) for r in runs)
        size = ", ".join(f"{k}={v}" for k, v in (runs[0]["size"] or {}).items()) or "fixed size"
        seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in runs}))
        out.append((task, f"{size}; {' / '.join(used) or 'no hyper-parameters'}; "
                          f"{_selected(runs[0], runs[0]['metric'])}; seeds {seeds}"))
    out += [("commit", _joined((r["env"] or {}).get("git_commit") or "-" for r in rows)),
            ("machine", "; ".join(sorted({_machine(r["env"] or {}) for r in rows}))),
            ("versions", ", ".join(f"{k} {' / '.join(v)}" for k, v in _versions(rows).items()) or "-")]
    return tuple(out)


def _recipe(settings: dict, scored: str | None) -> str:
    size = f", {settings['image_size']} px" if settings.get("image_size") else ""
    caps = "".join(f", {what} capped at the first {settings[k]:,} examples"
                   for k, what in (("max_train_examples", "training"), ("max_eval_examples", "val and test"))
                   if settings.get(k))
    scoring = {"loglik": ", answers scored by the log-likelihood of each option's label",
               "text": ", answers scored by the log-likelihood of each option's text",
               "generate": ", answers generated greedily and parsed"}.get(scored, "")
    draws = f", {settings['epoch_samples']:,} examples drawn per epoch" if settings.get("epoch_samples") else ""
    epochs = settings["epochs"]
    return f"{epochs} epoch{'s' * (epochs != 1)}, batch {settings['batch_size']}{size}{draws}{caps}{scoring}"


def _joined(values) -> str:
    return ", ".join(str(v) for v in sorted(set(values), key=str))


def _untuned(rows: list[dict]) -> str:
    """What untuned rows ran at: each method's own published defaults, so say which."""
    lrs = {r["method"]: r["hparams"].get("lr") for r in rows if r["hparams"].get("lr") is not None}
    heads = {r["hparams"].get("head_lr") for r in rows} - {None}
    text = ("**untuned**: each method's published default hyper-parameters, so the rows differ in step size "
            f"(lr {', '.join(f'{m} {lr:g}' for m, lr in sorted(lrs.items()))}")
    if heads:
        return text + f"; head lr {_joined(f'{h:g}' for h in heads)} for every method)"
    return text + "; the head trained at the method's lr)"


def _tuned(rows: list[dict], trials: str) -> str:
    from .tuning import LEARNING_RATE, WEIGHT_DECAY

    # the shared space came with ±1% budgets, so with ``budget_params`` (a headless task has no head_lr)
    shared = any("head_lr" in r["hparams"] or r.get("budget_params") is not None for r in rows)
    space = (f"one search space shared by every method (lr and head lr log-uniform in [{LEARNING_RATE[0]:g}, "
             f"{LEARNING_RATE[1]:g}], weight decay in [{WEIGHT_DECAY[0]:g}, {WEIGHT_DECAY[1]:g}]) plus each method's "
             f"own knobs, the first trial at the method's defaults" if shared
             else "each method's lr searched a decade either side of its own default (an earlier protocol)")
    return f"{trials} Optuna trials per task and method on train -> val over {space}; the best on val retrained"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def commands(records: list[dict]) -> list[str]:
    """The commands whose runs (trials included) make the section, each with when it started and how
    long it ran until its last record here, and the machines they ran on."""
    sittings: dict[tuple, list[str]] = defaultdict(list)
    for r in records:
        env = r["env"] or {}
        sittings[(env.get("command"), env.get("started"))].append(r["created_at"])
    commands, untimed = [], 0
    for (command, started), ends in sorted(sittings.items(), key=lambda item: str(item[0][1])):
        if command is None or started is None:
            untimed += len(ends)
            continue
        seconds = (datetime.fromisoformat(max(ends)) - datetime.fromisoformat(started)).total_seconds()
        commands.append(f"`{command}` (started {started}, {_duration(seconds)} until its last run here)")
    if untimed:
        commands.append(f"{untimed} run(s) recorded without their command (before peftbench recorded it)")
    machines = {_machine(r["env"] or {}) for r in records}
    return [f"- **Commands** {'; '.join(commands)}", f"- **Machine** {'; '.join(sorted(machines))}"]


def _machine(env: dict) -> str:
    box = env.get("machine") or {}
    cores = f", {box['cores']} cores" if box.get("cores") else ""
    memory = f", {box['memory_gib']} GiB memory" if box.get("memory_gib") else ""
    return f"{device(env)}{cores}{memory}, {env.get('threads', '?')} torch thread(s) per worker"


def device(env: dict) -> str:
    """The device as recorded: a GPU's name, or a CPU's model and the vector instructions torch
    used (recorded since commit 7229357; earlier records name the architecture only)."""
    found = env.get("device") or "unknown device"
    return "cpu (x86_64: model and vector ISA not recorded)" if found == "cpu (x86_64)" else found


def _versions(records: list[dict]) -> dict[str, list[str]]:
    """Per package, the versions the records ran with."""
    found: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for name, version in ((r["env"] or {}).get("packages") or {}).items():
            if version and name in PACKAGES:
                found[name].add(version)
    return {name: sorted(found[name]) for name in PACKAGES if name in found}


def _differing(rows: list[dict]) -> dict[str, list[str]]:
    """Per run, what tells its provenance apart where a section's runs differ: the commit, the
    versions of packages that differ, the machine. Empty where every run shares them."""
    columns: dict[str, list[str]] = {}
    commits = [(r["env"] or {}).get("git_commit") or "-" for r in rows]
    if len(set(commits)) > 1:
        columns["commit"] = commits
    differ = [name for name, versions in _versions(rows).items() if len(versions) > 1]
    if differ:
        columns["versions"] = [", ".join(f"{name} {((r['env'] or {}).get('packages') or {}).get(name, '?')}"
                                         for name in differ) for r in rows]
    machines = [device(r["env"] or {}) for r in rows]
    if len(set(machines)) > 1:
        columns["machine"] = machines
    return columns


def generating_commit() -> str:
    """The last commit that changed the code generating the page (not the page's own later commits,
    so a fresh clone regenerates it byte for byte); "unknown" outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        found = subprocess.run(["git", "log", "-1", "--format=%h", "--abbrev=12", "--", *CODE], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() or "unknown"


def header(rows: list[dict], backbone: str, higher: bool | None) -> list[str]:
    settings = [r["settings"] for r in rows]
    recipes = {_recipe(r["settings"], (r["details"] or {}).get("eval_mode")) for r in rows}
    trials = _joined(s.get("trials", 0) for s in settings)
    tuning = _untuned(rows) if trials == "0" else _tuned(rows, trials)
    protocols = _joined(s.get("protocol", 1) for s in settings)
    metric = _joined(r["metric"] for r in rows)
    direction = {True: "higher is better", False: "lower is better", None: "see each task"}[higher]
    scale = " (%)" if metric in PERCENT else ""
    fractions = sorted({fraction_of(r) for r in rows})
    budgets = sorted({r["budget"] for r in rows if r["budget"] != FIXED}, key=str) or [FIXED]
    return [
        f"- **Backbone** `{backbone}` ({fmt_count(rows[0]['total_params'])} parameters, frozen unless a method "
        f"trains it)",
        f"- **Budget** {', '.join(f'`{b}`' for b in budgets)}: every method sized to the same trainable "
        f"count (head excluded), within 1% where it can be; adapted modules: "
        f"{_joined(','.join(r['settings'].get('targets') or ['the family default']) for r in rows)}",
        f"- **Tuning** (protocol {protocols}, docs/protocol.md) {tuning}; **seeds** "
        f"{_joined(s.get('seeds', 1) for s in settings)} final runs on train+val, each tested once",
        f"- **Recipe** {'; '.join(sorted(recipes))}"
        + (f"; data fractions {', '.join(fmt_fraction(f) for f in fractions)}" if fractions != [1.0] else ""),
        f"- **Metric** test {metric}{scale}, mean over seeds ± half the width of its 95% Student-t interval over "
        f"seeds; {direction}",
        f"- **Produced by** commit {_joined(r['env'].get('git_commit') for r in rows)}; "
        + ", ".join(f"{k} {' / '.join(v)}" for k, v in _versions(rows).items()),
    ]
