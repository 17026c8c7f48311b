"""How well the tuning selected: per Optuna study, from its trial records and its final runs.

Pure functions over the dicts ``Store.records()`` returns (no store, no plotting): how many trials
completed, were pruned or failed; which slot won and whether it was the defaults (slot 0); the
best val score so far over the slots (a convergence curve); the selection margin between the
winner and the runner-up; the seed-to-seed noise of the val score, to compare that margin with;
and how stable the selection is under resampling. ``method_summary`` rolls studies up per method.

A study's records are its tune records (``details["study"]`` names it) and the final runs that
used its winner (``details["selected"]["study"]``).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

import numpy as np

#: metrics where lower is better; every other metric is maximised
LOWER_IS_BETTER = frozenset({"mse"})
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 1000, 0
#: where the val noise came from
NOISE_TUNE_SEEDS = "sd of the winner's val over its tune seeds"
NOISE_FINAL_SEEDS = "sd of the final runs' test metric over seeds (proxy)"


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def _sign(higher: bool) -> int:
    return 1 if higher else -1


def _completed(tune: Iterable[dict]) -> list[dict]:
    """The completed trials in slot order."""
    done = [r for r in tune if r["status"] == "ok" and r["val_metric"] is not None]
    return sorted(done, key=lambda r: r["details"]["slot"])


def _winner(done: list[dict], higher: bool) -> dict | None:
    """As ``tuning.best`` selects: the best val, the earliest slot on a tie."""
    if not done:
        return None
    sign = _sign(higher)
    return min(done, key=lambda r: (-sign * r["val_metric"], r["details"]["slot"]))


def best_so_far(tune: list[dict], higher: bool, trials: int | None = None) -> list[float | None]:
    """The best completed val score among slots 0..s, for each slot s (None before the first
    completed one): the study's convergence curve."""
    slots = trials if trials is not None else 1 + max((r["details"]["slot"] for r in tune), default=-1)
    by_slot = {r["details"]["slot"]: r["val_metric"] for r in _completed(tune)}
    curve, best = [], None
    for slot in range(slots):
        value = by_slot.get(slot)
        if value is not None and (best is None or _sign(higher) * (value - best) > 0):
            best = value
        curve.append(best)
    return curve


def margin(tune: list[dict], higher: bool) -> float | None:
    """How much better the winner's val is than the runner-up's (>= 0, in the metric's units);
    None with fewer than two completed trials."""
    values = sorted((r["val_metric"] for r in _completed(tune)), key=lambda v: -_sign(higher) * v)
    if len(values) < 2:
        return None
    return abs(values[0] - values[1])


def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def noise(winner: dict | None, finals: list[dict]) -> tuple[float | None, str | None]:
    """The seed-to-seed noise of the val score and where it came from: the SD over the winner's
    tune seeds where it trained several, else the SD over the final runs' test metric (the same
    configuration on train+val with each seed: a proxy for a val score's seed noise)."""
    per_seed = (winner or {}).get("details", {}).get("val_per_seed") or []
    if len(per_seed) >= 2:
        return _sd(per_seed), NOISE_TUNE_SEEDS
    tests = [r["test_metric"] for r in finals if r["status"] == "ok" and r["test_metric"] is not None]
    sd = _sd(tests)
    return (sd, NOISE_FINAL_SEEDS) if sd is not None else (None, None)


def stability(tune: list[dict], higher: bool, noise_sd: float | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> float | None:
    """The share of bootstrap resamples of the completed trials that select the winner again,
    among those that contain it.

    The trials alone cannot unseat the winner (it beats every other trial, so any resample holding
    it selects it), so each resampled trial's val score is redrawn from its own noise too: the
    mean of a resample of its per-seed values where it trained several seeds, else its val plus
    Gaussian noise of ``noise_sd`` (``noise``'s estimate; none: the trials alone, which gives 1).
    Deterministic: a numpy generator seeded with ``seed``. None without a completed trial."""
    done = _completed(tune)
    winner = _winner(done, higher)
    if winner is None:
        return None
    rng = np.random.default_rng(seed)
    n, sign = len(done), _sign(higher)
    target = done.index(winner)
    per_seed = [np.asarray(r["details"].get("val_per_seed") or [r["val_metric"]], dtype=float) for r in done]
    kept = hits = 0
    for _ in range(resamples):
        drawn = rng.integers(0, n, size=n)
        if target not in drawn:
            continue
        kept += 1
        values = np.empty(n)
        for i, trial in enumerate(drawn):
            seeds = per_seed[trial]
            if len(seeds) >= 2:
                values[i] = seeds[rng.integers(0, len(seeds), size=len(seeds))].mean()
            else:
                values[i] = seeds[0] + (rng.normal(0.0, noise_sd) if noise_sd else 0.0)
        # the best value, the earliest slot on a tie (done is in slot order, as tuning.best breaks ties)
        order = sorted(range(n), key=lambda i: (-sign * values[i], drawn[i]))
        hits += int(drawn[order[0]] == target)
    return hits / kept if kept else None


def study(name: str, tune: list[dict], finals: list[dict], higher: bool | None = None) -> dict:
    """One study's tuning, as a dict of plain values."""
    first = (tune or finals)[0]
    higher = higher_is_better(first["metric"]) if higher is None else higher
    slots = {r["details"]["slot"] for r in tune}
    trials = 1 + max(slots) if slots else 0
    done = _completed(tune)
    winner = _winner(done, higher)
    sd, source = noise(winner, finals)
    gap = margin(tune, higher)
    return {
        "study": name, "task": f"{first['suite']}/{first['task']}", "method": first["method"],
        "budget": first["budget"], "fraction": first["data_fraction"],
        "protocol": first["settings"].get("protocol", 1), "tune_seeds": first["settings"].get("tune_seeds", 1),
        "higher_is_better": higher,
        "trials": trials, "completed": len(done),
        "pruned": sum(r["status"] == "pruned" for r in tune), "failed": sum(r["status"] == "failed" for r in tune),
        "winner_slot": winner["details"]["slot"] if winner else None,
        "defaults_won": winner is not None and winner["details"]["slot"] == 0,
        "best_so_far": best_so_far(tune, higher, trials),
        "margin": gap, "noise": sd, "noise_source": source,
        "margin_below_noise": None if gap is None or sd is None else gap < sd,
        "stability": stability(tune, higher, sd),
        "finals": len(finals),
    }


def studies(records: Iterable[dict]) -> list[dict]:
    """Every study among ``records`` (any mix of phases), summarised; finals are matched to their
    study by ``details["selected"]["study"]`` and the study's trial count (a study continued with
    more trials has a final run per trial budget: the largest counts)."""
    tune: dict[str, list[dict]] = {}
    finals: dict[str, list[dict]] = {}
    for r in records:
        if r["phase"] == "tune":
            tune.setdefault(r["details"]["study"], []).append(r)
        elif r["phase"] == "final":
            chosen = (r.get("details") or {}).get("selected") or {}
            if chosen.get("by") == "val":
                finals.setdefault(chosen["study"], []).append(r)
    out = []
    for name in sorted(tune):
        trials = 1 + max(r["details"]["slot"] for r in tune[name])
        mine = [r for r in finals.get(name, []) if r["settings"].get("trials") == trials]
        out.append(study(name, tune[name], mine))
    return out


def method_summary(summaries: Iterable[dict]) -> dict[str, dict]:
    """Per method: its studies, how many the defaults won, the median number of completed trials,
    and how many studies selected by a margin below the noise (of those where both are known)."""
    by_method: dict[str, list[dict]] = {}
    for s in summaries:
        by_method.setdefault(s["method"], []).append(s)
    out = {}
    for method, rows in sorted(by_method.items()):
        judged = [s for s in rows if s["margin_below_noise"] is not None]
        stable = [s["stability"] for s in rows if s["stability"] is not None]
        out[method] = {
            "studies": len(rows),
            "defaults_won": sum(s["defaults_won"] for s in rows),
            "median_completed": statistics.median(s["completed"] for s in rows),
            "margin_below_noise": sum(s["margin_below_noise"] for s in judged),
            "margin_judged": len(judged),
            "median_stability": statistics.median(stable) if stable else None,
        }
    return out


def overall(summaries: list[dict]) -> dict:
    """The same figures over every study at once."""
    judged = [s for s in summaries if s["margin_below_noise"] is not None]
    completed = [s["completed"] for s in summaries]
    stable = [s["stability"] for s in summaries if s["stability"] is not None]
    return {
        "studies": len(summaries),
        "defaults_won": sum(s["defaults_won"] for s in summaries),
        "median_completed": statistics.median(completed) if completed else None,
        "mean_completed": statistics.fmean(completed) if completed else None,
        "at_most_3_completed": sum(c <= 3 for c in completed),
        "margin_below_noise": sum(s["margin_below_noise"] for s in judged),
        "margin_judged": len(judged),
        "median_stability": statistics.median(stable) if stable else None,
    }
