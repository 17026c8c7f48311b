"""The leaderboard rendered from a store of hand-made records: tables, intervals, paired
comparisons, bold only where significant, chance, hyper-parameters, reference rows, the header,
the figures and the sample-efficiency table."""

import math
import os
import re
import subprocess
import sys
import uuid

import numpy as np
import pytest

from peftbench import figures
from peftbench.board.markdown import page as render
from peftbench.outcomes import encode
from peftbench.reference import published
from peftbench.store import Store

ENV = {"packages": {"peftbench": "0.1.0", "torch": "2.14.1", "peft": "0.21.2"}, "python": "3.11.7",
       "git_commit": "abc123def456", "device": "cpu (x86_64)", "threads": 1}
VTAB_GROUPS = {"cifar": "natural", "dtd": "natural", "eurosat": "specialized", "kitti": "structured"}


def record(suite, task, group, method, seed, metric_value, *, metric="accuracy", backbone="dinov2-s",
           trainable=147_456, fraction=1.0, trials=4, seeds=2, size=None, **extra):
    return {
        "run_id": uuid.uuid4().hex, "spec_key": uuid.uuid4().hex, "suite": suite, "task": task, "group": group,
        "method": method, "backbone": backbone, "budget": "lora:r=8", "budget_params": 147_456, "budget_reached": 1,
        "size": {"r": 8} if size is None else size, "trainable_params": trainable, "head_params": 3_850,
        "total_params": 22_056_576, "hparams": {"lr": 1e-3, "weight_decay": 1e-4},
        "settings": {"backbone": backbone, "image_size": 56, "epochs": 3, "batch_size": 32, "trials": trials,
                     "seeds": seeds, "overrides": []},
        "seed": seed, "data_fraction": fraction, "phase": "final", "metric": metric, "val_metric": None,
        "test_metric": metric_value, "train_seconds": 12.5, "train_samples_per_s": 80.0,
        "eval_samples_per_s": 250.0, "merged_eval_samples_per_s": None, "peak_memory_mb": 310.0,
        "adapter_bytes": trainable * 4, "status": "ok", "error": None, "details": {}, "env": ENV, **extra,
    }


def table_rows(text, section, which=0):
    """The lines of the ``which``-th table under the heading ``section`` (``## suite on backbone``, or
    a subsection, ``### suite on backbone: paired differences from lora``), as lists of cells."""
    block = re.split(r"\n##+ ", text.split(f"# {section}\n")[1])[0]
    found = re.findall(r"(?:^\|.*\n?)+", block, flags=re.M)[which]
    return [[c.strip() for c in line.strip("|").split("|")] for line in found.splitlines()
            if line.startswith("| ")]


def estimate(cell):
    """The mean a cell shows, without its marks and interval."""
    return cell.replace("**", "").split(" ±")[0].split(" (")[0]


def hits(n, k, order):
    """Right/wrong outcomes: right on the first ``k`` examples of ``order`` (a permutation of ``n``)."""
    right = np.zeros(n, dtype=bool)
    right[order[:k]] = True
    return right


def add(store, suite, task, method, seed, outcomes, **extra):
    """A final run whose test metric is the mean of its outcomes, which it keeps."""
    value = float(np.mean(outcomes))
    store.add(record(suite, task, "natural" if suite == "quick" else suite, method, seed, value,
                     outcomes=encode(outcomes), **extra))


@pytest.fixture
def vtab_store(store_path):
    store = Store(store_path)
    accuracy = {"lora": {"cifar": 0.70, "dtd": 0.60, "eurosat": 0.90, "kitti": 0.50},
                "hora": {"cifar": 0.72, "dtd": 0.56, "eurosat": 0.94, "kitti": 0.56}}
    for method, tasks in accuracy.items():
        for task, value in tasks.items():
            for seed in (0, 1):
                store.add(record("vtab", task, VTAB_GROUPS[task], method, seed, value + 0.01 * seed,
                                 trainable=147_456 if method == "lora" else 148_968,
                                 train_samples_per_s=80.0 if method == "lora" else 70.0))
    for seed in (0, 1):  # a stale final run of a less-tuned study: superseded
        store.add(record("vtab", "cifar", "natural", "lora", seed, 0.10, trials=1))
    return store


def test_vtab_table_group_means_bold_and_reference_rows(vtab_store, tmp_path):
    """Seed-level intervals; bold where no other row is better after correction; the paired
    differences in their own table; reference rows below a rule."""
    out = tmp_path / "board" / "README.md"
    text = render(vtab_store, out)
    rows = table_rows(text, "vtab on dinov2-s")
    header = rows[0]
    assert header[:8] == ["method", "budget", "cifar", "dtd", "eurosat", "kitti", "natural mean", "specialized mean"]
    assert header[8:12] == ["structured mean", "mean (4 tasks)", "mean of groups", "trainable (% of budget)"]
    hora, lora = rows[1], rows[2]
    assert hora[0] == "hora" and lora[0] == "lora"
    # two seeds a point apart: Student t with 1 degree of freedom, t(0.975, 1) = 12.706
    half = f"{12.7062 * (0.01 / math.sqrt(2)) / math.sqrt(2) * 100:.1f}"
    assert half == "6.4"
    # lora: natural (0.70 + 0.60) / 2 = 65.0 (seed 0) and 66.0 (seed 1); tasks mean 67.5 / 68.5;
    # groups (65 + 90 + 50) / 3 = 68.33 / 69.33; the stale 10% cifar run is ignored
    assert lora[6] == f"**65.5 ± {half}**" and lora[9] == f"68.0 ± {half}" and lora[10] == f"68.8 ± {half}"
    assert lora[2] == f"70.5 ± {half}"
    # higher is better: bold goes to the larger accuracy, per column (the seeds agree on the difference)
    assert hora[2].startswith("**72.5") and not lora[2].startswith("**")
    assert lora[3].startswith("**60.5") and not hora[3].startswith("**")
    assert hora[9].startswith("**") and hora[10].startswith("**")
    # paired with lora, seed by seed: hora's mean is 2 points higher at both seeds
    deltas = table_rows(text, "vtab on dinov2-s: paired differences from lora")
    assert deltas[0][:3] == ["method", "budget", "cifar"] and deltas[0][-1] == "mean of groups"
    assert deltas[1][0] == "hora" and deltas[1][9] == "+2.0 [+2.0, +2.0] better"
    assert deltas[1][3] == "-4.0 [-4.0, -4.0] worse"  # dtd
    assert deltas[2][0] == "*minimum detectable effect*" and len(deltas) == 3  # lora itself: no row
    assert "**Family**: the 9 differences of this table, Holm-corrected" in text
    # fewer trainable parameters and more samples/s are better
    assert lora[11] == "**0.147M (100.0%)**" and hora[11] == "0.149M (101.0%)"  # % of the budget
    assert lora[12] == "**80**" and hora[12] == "70"
    assert lora[13] == hora[13] == "250"  # every row equal: no best to bold
    assert "95% Student-t interval over seeds" in text
    # reference rows: below the rule row, labelled with their source, never bold
    rule = next(i for i, row in enumerate(rows) if "reported in papers" in row[0])
    assert rule == 3
    reported = rows[rule + 1:]
    assert reported and all("reported (" in row[0] for row in reported)
    assert not any("**" in cell for row in reported for cell in row)
    lora_paper = next(row for row in reported if row[0].startswith("LoRA"))
    assert lora_paper[2] == "67.1" and "V-PETL Bench" in lora_paper[0] and "on ViT-B/16 (IN-21k)" in lora_paper[0]
    assert lora_paper[11] == "0.29M"
    # the figures are written beside the markdown and embedded by relative links
    for kind in ("pareto", "profiles"):
        assert (out.parent / "figures" / f"vtab-dinov2-s-{kind}.png").stat().st_size > 10_000
        assert f"](figures/vtab-dinov2-s-{kind}.png)" in text


def test_header_states_backbone_budget_trials_seeds_commit_and_versions(vtab_store):
    text = render(vtab_store)
    header = text.split("## vtab on dinov2-s")[1].split("| method")[0]
    assert "**Backbone** `dinov2-s`" in header and "**Budget** `lora:r=8`" in header
    assert "4 Optuna trials" in header and "**seeds** 2 final runs" in header
    assert "commit abc123def456" in header and "torch 2.14.1" in header and "peft 0.21.2" in header
    assert "higher is better" in header
    assert "figures/" not in text  # no output path: no figures


def test_header_states_each_command_with_its_wall_time_and_the_machine(store_path):
    store = Store(store_path)
    machine = {"cores": 2, "memory_gib": 24, "system": "Linux"}
    sitting = {**ENV, "machine": machine, "command": "peftbench run --methods lora --tasks quick",
               "started": "2026-12-02T08:00:00+00:00"}
    resumed = {**sitting, "command": sitting["command"] + " --resume", "started": "2026-12-02T10:00:00+00:00"}
    for seed, (env, end) in enumerate([(sitting, "2026-12-02T08:40:00+00:00"), (sitting, "2026-12-02T09:25:00+00:00"),
                                       (resumed, "2026-12-02T10:05:00+00:00"), (ENV, "2026-11-01T00:00:00+00:00")]):
        store.add(record("quick", "digits", "natural", "lora", seed, 0.9, env=env, created_at=end))
    store.add(record("quick", "digits", "natural", "lora", 0, None, env=resumed, phase="tune",
                     created_at="2026-12-02T10:30:00+00:00"))  # a trial: part of the sitting too
    header = render(store).split("## quick on dinov2-s")[1].split("| method")[0]
    assert ("`peftbench run --methods lora --tasks quick` (started 2026-12-02T08:00:00+00:00, 1 h 25 min "
            "until its last run here)") in header
    assert "`peftbench run --methods lora --tasks quick --resume` (started 2026-12-02T10:00:00+00:00, 30 min" in header
    assert "1 run(s) recorded without their command" in header
    assert ("**Machine** cpu (x86_64: model and vector ISA not recorded), 1 torch thread(s) per worker; "
            "cpu (x86_64: model and vector ISA not recorded), 2 cores, 24 GiB memory") in header


def test_header_states_a_cut_recipe_and_slow_rates_keep_a_decimal(store_path):
    store = Store(store_path)
    cut = {"backbone": "dinov2-s", "image_size": 56, "epochs": 1, "batch_size": 32, "trials": 0, "seeds": 1,
           "max_train_examples": 32, "max_eval_examples": 2000, "overrides": ["epochs"]}
    store.add({**record("quick", "digits", "natural", "lora", 0, 0.9, train_samples_per_s=0.64), "settings": cut})
    text = render(store)
    recipe = text.split("**Recipe** ")[1].splitlines()[0]
    assert recipe.startswith("1 epoch, batch 32, 56 px")
    assert "training capped at the first 32 examples" in recipe
    assert "val and test capped at the first 2,000 examples" in recipe
    assert table_rows(text, "quick on dinov2-s")[1][-4:-2] == ["0.6", "250"]  # slow: a decimal


def test_lower_is_better_bolds_the_minimum_and_the_fraction_curves(store_path, tmp_path):
    store = Store(store_path)
    mse = {"lora": {0.25: 0.08, 0.5: 0.02, 1.0: 0.004}, "hora": {0.25: 0.05, 0.5: 0.03, 1.0: 0.002}}
    for method, curve in mse.items():
        for fraction, value in curve.items():
            for seed in (0, 1):
                for task, factor in (("shared", 1.0), ("independent", 1.5)):
                    store.add(record("hmoe", task, "hmoe", method, seed, value * factor * (1 + 0.1 * seed),
                                     metric="mse", backbone="hmoe-attention", trainable=1024, fraction=fraction,
                                     details={"train_examples": round(16384 * fraction) + 3}))  # as recorded, not f x n
    out = tmp_path / "README.md"
    text = render(store, out)
    rows = table_rows(text, "hmoe on hmoe-attention")
    assert rows[0][:5] == ["method", "budget", "independent", "shared", "mean"]
    hora, lora = rows[1], rows[2]
    # full data only; two seeds 10% apart: t(0.975, 1) * std / sqrt(2)
    assert hora[3] == "**0.0021 ± 0.00127**" and lora[3] == "0.0042 ± 0.00254"
    assert "(chance)" not in text  # no untrained rows to compare with
    assert "lower is better" in text and not any("reported" in row[0] for row in rows)
    block = text.split("sample efficiency")[1]
    fractions = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
                 if line.startswith("| ")]
    assert fractions[0] == ["task", "method", "25%", "50%", "100%"]
    assert ["shared", "*training examples*", "4,099", "8,195", "16,387"] in fractions
    shared_hora = next(r for r in fractions if r[:2] == ["shared", "hora"])
    shared_lora = next(r for r in fractions if r[:2] == ["shared", "lora"])
    assert shared_hora[2].startswith("**0.0525") and shared_lora[3].startswith("**0.021")
    assert not shared_lora[2].startswith("**") and not shared_hora[3].startswith("**")
    for kind in ("pareto", "fractions"):
        path = tmp_path / "figures" / f"hmoe-hmoe-attention-{kind}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"](figures/{path.name})" in text


def test_reference_file_keeps_its_sources():
    rows = published()
    assert {r.suite for r in rows} == {"vtab", "fgvc", "commonsense"}
    assert all(r.source and r.reported_as and 0 < r.value <= 1 for r in rows)
    vtab_lora = {r.task: r.value for r in rows if r.suite == "vtab" and r.reported_as == "LoRA"}
    assert len(vtab_lora) == 19 and vtab_lora["cifar"] == pytest.approx(0.671)
    assert re.fullmatch(r"timm:vit_base_patch16_224\.augreg_in21k", next(r.backbone for r in rows if r.suite == "vtab"))


def test_untuned_rows_say_so_with_each_methods_learning_rate_and_a_short_budget_is_marked(store_path):
    store = Store(store_path)
    store.add(record("quick", "digits", "", "lora", 0, 0.9, trials=0,
                     hparams={"lr": 1e-3, "weight_decay": 1e-4, "head_lr": 1e-3}))
    store.add(record("quick", "digits", "", "hora", 0, 0.9, trials=0, trainable=140_000, budget_reached=0,
                     hparams={"lr": 3e-3, "weight_decay": 1e-4, "head_lr": 1e-3}))
    text = render(store)
    assert "**untuned**" in text and "lr hora 0.003, lora 0.001; head lr 0.001 for every method" in text
    rows = table_rows(text, "quick on dinov2-s")
    assert rows[1][0] == "hora †" and rows[1][3] == "**0.140M (94.9%)**"
    assert "† cannot land within 1% of the budget" in text


def test_tuned_rows_name_the_shared_search_space(store_path):
    store = Store(store_path)
    store.add(record("vtab", "dtd", "natural", "lora", 0, 0.6, budget_params=None))  # before ±1% budgets
    assert "each method's lr searched a decade either side of its own default" in render(store)
    store.add(record("quick", "digits", "", "lora", 0, 0.9,
                     hparams={"lr": 2e-3, "weight_decay": 1e-4, "head_lr": 5e-3}))
    text = render(store).split("## quick")[1]
    assert "one search space shared by every method (lr and head lr log-uniform in [1e-05, 0.1]" in text
    # a task without a head has no head lr: its budget says the protocol
    store.add(record("hmoe", "shared", "hmoe", "lora", 0, 0.001, metric="mse", backbone="hmoe-attention"))
    assert "one search space shared by every method" in render(store).split("## hmoe")[1]


# --- intervals, paired comparisons, significance, chance ------------------------------------------

def test_bold_marks_every_row_no_other_row_beats_after_correction(store_path):
    n = 3_000
    orders = [np.random.default_rng(seed).permutation(n) for seed in (0, 1)]
    apart, close = Store(store_path), Store(store_path.replace(".db", "-close.db"))
    for seed, order in enumerate(orders):
        lora = hits(n, 2_100, order)
        add(apart, "quick", "digits", "lora", seed, lora)
        add(apart, "quick", "digits", "hora", seed, hits(n, 2_400 + 30 * seed, order))  # 10 and 11 points more
        add(close, "quick", "digits", "lora", seed, lora)
        add(close, "quick", "digits", "hora", seed, hits(n, 2_100 + (1 if seed else -1), order))  # ± one example
    text = render(apart)
    rows = table_rows(text, "quick on dinov2-s")
    hora, lora = rows[1], rows[2]
    assert rows[0][2:4] == ["digits", "trainable (% of budget)"]  # one task: no mean column
    assert hora[2].startswith("**80.5 ± ") and lora[2].startswith("70.0 ± ") and "**" not in lora[2]
    deltas = table_rows(text, "quick on dinov2-s: paired differences from lora")
    assert deltas[1][2].startswith("+10.5 [+") and deltas[1][2].endswith("better")
    text = render(close)
    rows = table_rows(text, "quick on dinov2-s")
    hora, lora = rows[1], rows[2]
    assert estimate(hora[2]) == "70.0" and estimate(lora[2]) == "70.0"
    assert hora[2].startswith("**") and lora[2].startswith("**")  # neither beats the other: both bold
    deltas = table_rows(text, "quick on dinov2-s: paired differences from lora")
    assert re.fullmatch(r"\+0\.0 \[-\d+\.\d, \+\d+\.\d\], no difference above ±\d+\.\d detectable", deltas[1][2])
    assert "≈" not in text and "tied" not in text


def test_a_row_at_chance_is_marked_and_never_bold(store_path):
    n = 1_000
    order = np.random.default_rng(2).permutation(n)
    store = Store(store_path)
    for seed in (0, 1):
        add(store, "quick", "digits", "lora", seed, hits(n, 800 + seed, order))
        add(store, "quick", "digits", "vera", seed, hits(n, 112 if seed else 96, order))  # around 10%
        add(store, "quick", "digits", "linear", seed, hits(n, 100, order), trainable=0, size={})
    text = render(store)
    rows = {row[0]: row for row in table_rows(text, "quick on dinov2-s")[1:]}
    # the only row above chance is bold: it is the best, and nothing else is a contender
    assert rows["lora"][2].startswith("**80.0") and "(chance)" not in rows["lora"][2]
    for method in ("vera", "linear"):
        assert rows[method][2].endswith("(chance)") and "**" not in rows[method][2]
    assert "1/classes (digits 10.0%)" in text
    # the best row itself at chance: no bold anywhere
    only_chance = Store(store_path.replace(".db", "-chance.db"))
    for seed in (0, 1):
        add(only_chance, "quick", "digits", "vera", seed, hits(n, 112 if seed else 96, order))
        add(only_chance, "quick", "digits", "linear", seed, hits(n, 100, order), trainable=0, size={})
    rows = table_rows(render(only_chance), "quick on dinov2-s")[1:]
    assert all(row[2].endswith("(chance)") and "**" not in row[2] for row in rows)


def test_regression_rows_no_better_than_the_untrained_model_are_marked(store_path):
    rng = np.random.default_rng(3)
    base = rng.exponential(1.0, 4096).astype(np.float32)  # the frozen student's squared errors
    store = Store(store_path)
    hmoe = {"metric": "mse", "backbone": "hmoe-attention"}
    for seed in (0, 1):
        for method, errors in {"linear": base, "lora": base * (0.01 + 0.001 * seed),
                               "vera": base * (1.01 if seed else 0.99)}.items():
            fixed = {"trainable": 0, "size": {}, "head_params": 0} if method == "linear" else {}
            add(store, "hmoe", "shared", method, seed, errors, **hmoe, **fixed)
    text = render(store)
    rows = {row[0]: row for row in table_rows(text, "hmoe on hmoe-attention")[1:]}
    assert rows["lora"][2].startswith("**") and "(chance)" not in rows["lora"][2]
    assert rows["linear"][2].endswith("(chance)") and rows["vera"][2].endswith("(chance)")
    assert "no better than the untrained model" in text


def test_against_names_the_reference_of_the_paired_table(vtab_store):
    text = render(vtab_store, against="hora")
    rows = table_rows(text, "vtab on dinov2-s: paired differences from hora")
    assert rows[1][0] == "lora" and rows[1][9] == "-2.0 [-2.0, -2.0] worse"
    text = render(vtab_store, against="nope")
    assert "No `nope` rows here: no paired differences" in text


def test_one_seed_gives_no_interval_and_no_verdict(store_path):
    store = Store(store_path)
    order = np.arange(200)
    add(store, "quick", "digits", "lora", 0, hits(200, 150, order), seeds=1)
    store.add(record("quick", "digits", "natural", "hora", 0, 0.8, seeds=1))  # an old record: no outcomes
    text = render(store)
    rows = table_rows(text, "quick on dinov2-s")
    assert rows[1][2] == "80.0" and rows[2][2] == "75.0"  # means alone, nothing bold
    deltas = table_rows(text, "quick on dinov2-s: paired differences from lora")
    assert deltas[1][2] == "+5.0 (1 seed: no test)" and deltas[2][2] == "-"


# --- the hyper-parameters of the final runs -------------------------------------------------------

def test_hyperparameters_of_the_final_runs_and_what_selected_them(store_path):
    store = Store(store_path)
    chosen = {"lr": 2e-3, "weight_decay": 1e-4, "head_lr": 5e-3, "alpha_over_r": 2.0, "dropout": 0.1}
    selected = {"by": "val", "study": "s", "slot": 3, "val_metric": 0.91}
    for task in ("digits", "textures"):
        for seed in (0, 1):
            store.add(record("quick", task, "natural", "lora", seed, 0.9, hparams=chosen,
                             details={"selected": selected}))
    store.add(record("quick", "digits", "natural", "hora", 0, 0.9, trials=0, size={"r": 13, "hidden": 31},
                     hparams={"lr": 3e-3, "weight_decay": 1e-4, "head_lr": 1e-3, "hidden": 32},
                     details={"selected": {"by": "defaults"}}))
    store.add(record("quick", "textures", "natural", "hora", 0, 0.9, trials=0, size={"r": 13, "hidden": 31},
                     hparams={"lr": 1e-3, "weight_decay": 1e-4, "head_lr": 1e-3, "hidden": 32},
                     details={"selected": {"by": "defaults"}}))
    text = render(store)
    rows = table_rows(text, "quick on dinov2-s: hyper-parameters")
    assert rows[0] == ["method", "budget", "tasks", "size", "lr", "head lr", "weight decay", "method's own",
                       "trials", "selected by"]
    assert ["hora", "lora:r=8", "digits", "r=13, hidden=31", "0.003", "0.001", "0.0001", "hidden=32", "0",
            "the method's defaults (untuned)"] in rows
    assert ["hora", "lora:r=8", "textures", "r=13, hidden=31", "0.001", "0.001", "0.0001", "hidden=32", "0",
            "the method's defaults (untuned)"] in rows
    # both tasks ran the same configuration: one row
    assert ["lora", "lora:r=8", "all 2", "r=8", "0.002", "0.005", "0.0001", "alpha_over_r=2, dropout=0.1", "4",
            "best on val of 4 trials (slot 3, val 91.0)"] in rows
    assert len(rows) == 4


# --- figures ---------------------------------------------------------------------------------------

def test_a_method_has_one_colour_in_every_figure(tmp_path):
    assert len({figures.color(m) for m in figures.KNOWN}) == len(figures.KNOWN)  # built-ins never collide
    # not Python's salted hash: the same colour in another process with another hash seed
    probe = "from peftbench.figures import color; print(color('my-method[share=none]'))"
    colours = {subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip() for seed in (1, 2)}
    assert colours == {figures.color("my-method[share=none]")}
    axis = figures.Axis("accuracy", False, 100)
    pareto = figures.pareto([figures.Line("hora", "hora", [figures.Point(1e5, 0.8, 0.7, 0.9)]),
                             figures.Line("adapter", "adapter", [figures.Point(2e5, 0.7)])],
                            axis, "t", tmp_path / "p.png")
    curves = figures.fractions({"digits": [figures.Line("zeta", "zeta", [figures.Point(0.5, 0.6)]),
                                           figures.Line("hora", "hora", [figures.Point(0.5, 0.8),
                                                                         figures.Point(1.0, 0.9)])]},
                               axis, "t", tmp_path / "f.png")

    def colour_of(figure, label):
        from matplotlib.colors import to_hex

        for ax in figure.axes:
            for container in ax.containers:  # error bars (the Pareto figure)
                if container.get_label() == label:
                    return to_hex(container.lines[0].get_color())
            for line in ax.get_lines():
                if line.get_label() == label:
                    return to_hex(line.get_color())

    # hora is drawn first in one figure and second in the other: its colour does not follow the order
    assert colour_of(pareto, "hora") == colour_of(curves, "hora") == figures.color("hora")
    assert colour_of(pareto, "adapter") == figures.color("adapter") != figures.color("hora")


def test_a_budget_curve_on_one_task_of_a_suite_is_drawn_and_tabled_on_that_task(store_path, tmp_path, monkeypatch):
    store = Store(store_path)
    n = 400
    order = np.arange(n)
    for seed in (0, 1):  # hora one example more at seed 1
        for task in ("digits", "textures"):  # the default budget on both tasks
            for method, right in (("lora", 300), ("hora", 320 + seed)):
                add(store, "quick", task, method, seed, hits(n, right, order))
        for budget, scale in (("lora:r=2", 2), ("lora:r=32", 32)):  # further budgets on digits only
            for method, right in (("lora", 280 + scale), ("hora", 240 + scale + seed)):
                add(store, "quick", "digits", method, seed, hits(n, right, order), budget=budget,
                    trainable=18_432 * scale)
    drawn = {}
    original = figures.pareto

    def spy(lines, axis, *args, **kwargs):
        drawn.update({line.method: line for line in lines}, label=axis.label)
        return original(lines, axis, *args, **kwargs)

    monkeypatch.setattr(figures, "pareto", spy)
    text = render(store, tmp_path / "README.md")
    assert drawn["label"].startswith("digits:")  # the task every budget ran, not the suite mean
    assert [p.mean for p in drawn["hora"].points] == pytest.approx([242.5 / n, 320.5 / n, 272.5 / n])
    assert "### quick on dinov2-s: budgets" in text
    rows = table_rows(text, "quick on dinov2-s: budgets")
    assert rows[0][3] == "digits: test accuracy" and rows[0][4] == "Δ vs lora"
    assert "Family: the 3 paired differences of this table, Holm-corrected" in text
    deltas = {row[1]: row[4] for row in rows[1:] if row[0] == "hora"}
    assert deltas["lora:r=2"].startswith("-9.9 [") and deltas["lora:r=2"].endswith("worse")
    assert deltas["lora:r=8"].startswith("+5.1 [") and deltas["lora:r=8"].endswith("better")


def test_pareto_draws_one_line_per_method_through_its_budgets(store_path, tmp_path, monkeypatch):
    store = Store(store_path)
    n = 400
    order = np.arange(n)
    for seed in (0, 1):
        for budget, scale in (("lora:r=4", 1), ("lora:r=16", 4)):
            for method in ("lora", "hora"):
                add(store, "quick", "digits", method, seed, hits(n, 300 + 10 * scale + seed, order), budget=budget,
                    trainable=36_864 * scale + (1_000 if method == "hora" else 0))
            add(store, "quick", "digits", "linear", seed, hits(n, 250, order), budget=budget, trainable=0, size={})
    drawn = {}
    original = figures.pareto

    def spy(lines, *args, **kwargs):
        drawn.update({line.method: line for line in lines})
        return original(lines, *args, **kwargs)

    monkeypatch.setattr(figures, "pareto", spy)
    text = render(store, tmp_path / "README.md")
    assert sorted(drawn) == ["hora", "linear", "lora"]
    assert [p.x for p in drawn["lora"].points] == [36_864, 4 * 36_864]  # both budgets, one line
    assert len(drawn["hora"].points) == 2 and len(drawn["linear"].points) == 1  # fixed size: one point
    assert all(p.low < p.mean < p.high for p in drawn["lora"].points)  # error bars from the intervals
    rows = table_rows(text, "quick on dinov2-s: paired differences from lora")
    # each budget's row compared with lora at the same budget
    assert {row[1]: row[2] for row in rows[1:] if row[0] == "hora"} == {
        # the seeds agree exactly: the test takes their spread as one test example (0.25 points)
        "lora:r=16": "+0.0 [-2.2, +2.2], no difference above ±11.5 detectable",
        "lora:r=4": "+0.0 [-2.2, +2.2], no difference above ±11.5 detectable"}


def test_a_sample_efficiency_curve_on_some_tasks_is_drawn_per_task(store_path, tmp_path, monkeypatch):
    """Five tasks at full data, one of them also at smaller fractions: its own panel, not the suite
    mean (which exists at 100% only)."""
    store = Store(store_path)
    for task in ("a", "b", "c", "d", "e"):
        for seed in (0, 1):
            for method in ("lora", "hora"):
                store.add(record("vtab-lite", task, "", method, seed, 0.8 + 0.01 * seed))
    for fraction in (0.1, 0.5):
        for seed in (0, 1):
            for method in ("lora", "hora"):
                store.add(record("vtab-lite", "c", "", method, seed, 0.5 + fraction / 2 + 0.01 * seed,
                                 fraction=fraction))
    drawn = {}
    original = figures.fractions

    def spy(panels, *args, **kwargs):
        drawn.update(panels)
        return original(panels, *args, **kwargs)

    monkeypatch.setattr(figures, "fractions", spy)
    text = render(store, tmp_path / "README.md")
    assert list(drawn) == ["c"] and len(drawn["c"]) == 2
    assert [p.x for p in drawn["c"][0].points] == [0.1, 0.5, 1.0]
    assert "](figures/vtab-lite-dinov2-s-fractions.png)" in text


def test_finals_of_a_newer_tuning_protocol_supersede_older_ones(store_path):
    store = Store(store_path)
    for seed in (0, 1):
        store.add(record("quick", "digits", "", "lora", seed, 0.5))  # protocol 1 (not recorded)
        store.add(record("quick", "digits", "", "lora", seed, 0.9,
                         settings={**record("quick", "digits", "", "lora", 0, 0)["settings"], "protocol": 2}))
    text = render(store)
    assert estimate(table_rows(text, "quick on dinov2-s")[1][2]) == "90.0"
    assert "**Tuning** (protocol 2, docs/protocol.md)" in text


def test_provenance_per_row_where_it_differs_and_the_generating_commit(store_path):
    store = Store(store_path)
    newer = {**ENV, "git_commit": "fedcba987654", "packages": {**ENV["packages"], "optuna": "5.1.0"},
             "device": "cpu (AMD EPYC, AVX2)"}
    older = {**ENV, "packages": {**ENV["packages"], "optuna": "5.0.0"}}
    for seed in (0, 1):
        store.add(record("quick", "digits", "", "lora", seed, 0.9, env=older))
        store.add(record("quick", "textures", "", "lora", seed, 0.9, env=newer))
    text = render(store)
    assert re.search(r"Generated by peftbench at commit [0-9a-f]{12} \(the last commit that changed its code\)", text)
    assert "optuna 5.0.0 / 5.1.0" in text  # the header names every version, not the last record's
    rows = table_rows(text, "quick on dinov2-s: hyper-parameters")
    assert rows[0][-3:] == ["commit", "versions", "machine"]
    assert rows[1][2] == "digits" and rows[1][-3:] == ["abc123def456", "optuna 5.0.0",
                                                       "cpu (x86_64: model and vector ISA not recorded)"]
    assert rows[2][2] == "textures" and rows[2][-3:] == ["fedcba987654", "optuna 5.1.0", "cpu (AMD EPYC, AVX2)"]
