"""The leaderboard rendered from a store of hand-made records: tables, bold, reference rows,
the header, the figures and the sample-efficiency table."""

import re
import uuid

import pytest

from peftbench.leaderboard import render
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


def table_rows(text, section):
    """The table lines of one section, as lists of cells."""
    block = text.split(f"## {section}")[1].split("\n## ")[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("| ") and not line.startswith("|---")]


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
    out = tmp_path / "board" / "README.md"
    text = render(vtab_store, out)
    rows = table_rows(text, "vtab on dinov2-s")
    header = rows[0]
    assert header[:8] == ["method", "budget", "cifar", "dtd", "eurosat", "kitti", "natural mean", "specialized mean"]
    assert header[8:11] == ["structured mean", "mean (4 tasks)", "mean of groups"]
    hora, lora = rows[1], rows[2]
    assert hora[0] == "hora" and lora[0] == "lora"
    # lora: natural (0.70 + 0.60) / 2 = 65.0 (seed 0) and 66.0 (seed 1); tasks mean 67.5 / 68.5;
    # groups (65 + 90 + 50) / 3 = 68.33 / 69.33; the stale 10% cifar run is ignored
    assert lora[6] == "**65.5 ± 0.7**" and lora[9] == "68.0 ± 0.7" and lora[10] == "68.8 ± 0.7"
    assert lora[2] == "70.5 ± 0.7"
    # higher is better: bold goes to the larger accuracy, per column
    assert hora[2].startswith("**72.5") and not lora[2].startswith("**")
    assert lora[3].startswith("**60.5") and not hora[3].startswith("**")
    assert hora[9].startswith("**") and hora[10].startswith("**")
    # fewer trainable parameters and more samples/s are better
    assert lora[11] == "**0.147M (100.0%)**" and hora[11] == "0.149M (101.0%)"  # % of the budget
    assert lora[12] == "**80**" and hora[12] == "70"
    assert lora[13] == hora[13] == "250"  # every row equal: no best to bold
    # reference rows: below the rule row, labelled with their source, never bold
    rule = next(i for i, row in enumerate(rows) if "reported in papers" in row[0])
    assert rule == 3
    reported = rows[rule + 1:]
    assert reported and all("reported (" in row[0] for row in reported)
    assert not any("**" in cell for row in reported for cell in row)
    lora_paper = next(row for row in reported if row[0].startswith("LoRA"))
    assert lora_paper[2] == "67.1" and "V-PETL Bench" in lora_paper[0] and "on ViT-B/16 (IN-21k)" in lora_paper[0]
    assert lora_paper[11] == "0.29M"
    # the Pareto figure is written beside the markdown and embedded by a relative link
    assert (out.parent / "figures" / "vtab-dinov2-s-pareto.png").stat().st_size > 10_000
    assert "](figures/vtab-dinov2-s-pareto.png)" in text


def test_header_states_backbone_budget_trials_seeds_commit_and_versions(vtab_store):
    text = render(vtab_store)
    header = text.split("## vtab on dinov2-s")[1].split("| method")[0]
    assert "**Backbone** `dinov2-s`" in header and "**Budget** `lora:r=8`" in header
    assert "4 Optuna trials" in header and "**seeds** 2 final runs" in header
    assert "commit abc123def456" in header and "torch 2.14.1" in header and "peft 0.21.2" in header
    assert "higher is better" in header
    assert "figures/" not in text  # no output path: no figures


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
                                     details={"train_examples": round(16384 * fraction)}))
    out = tmp_path / "README.md"
    text = render(store, out)
    rows = table_rows(text, "hmoe on hmoe-attention")
    assert rows[0][:5] == ["method", "budget", "independent", "shared", "mean"]
    hora, lora = rows[1], rows[2]
    assert hora[3] == "**0.0021 ± 0.000141**" and lora[3] == "0.0042 ± 0.000283"  # full data only
    assert "lower is better" in text and not any("reported" in row[0] for row in rows)
    block = text.split("sample efficiency")[1]
    fractions = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
                 if line.startswith("| ")]
    assert fractions[0] == ["task", "method", "25%", "50%", "100%"]
    assert ["shared", "*training examples*", "4,096", "8,192", "16,384"] in fractions
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
    assert rows[1][0] == "hora †" and rows[1][4] == "**0.140M (94.9%)**"
    assert "† cannot land within 1% of the budget" in text


def test_tuned_rows_name_the_shared_search_space(vtab_store):
    text = render(vtab_store)
    assert "each method's lr searched a decade either side of its own default" in text  # no head_lr: older runs
    vtab_store.add(record("quick", "digits", "", "lora", 0, 0.9,
                          hparams={"lr": 2e-3, "weight_decay": 1e-4, "head_lr": 5e-3}))
    text = render(vtab_store).split("## quick")[1]
    assert "one search space shared by every method (lr and head lr log-uniform in [1e-05, 0.1]" in text
