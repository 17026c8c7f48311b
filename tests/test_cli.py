"""The command line end to end on a tiny backbone, and its answers to bad input."""

import subprocess
import sys

import pytest
from conftest import cli_env, digest, tiny_run

from peftbench.cli import main
from peftbench.outcomes import decode
from peftbench.store import FIELDS, Store


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("run") / "results.db")
    assert main(tiny_run("lora,linear", tasks="quick", trials=1, store=path)) == 0
    return path


def test_run_records_a_trial_and_a_final_run_per_task_and_method(finished_store):
    records = Store(finished_store).records()
    assert sorted((r["task"], r["method"], r["phase"]) for r in records) == [
        (task, method, phase) for task in ("digits", "textures") for method in ("linear", "lora")
        for phase in ("final", "tune")]
    for r in records:
        assert r["status"] == "ok" and set(r) == set(FIELDS)
        assert r["train_samples_per_s"] > 0 and r["env"]["packages"]["torch"]
        # the linear probe's trials score val on cached features: no backbone throughput to report
        cached = r["method"] == "linear" and r["phase"] == "tune"
        assert r["eval_samples_per_s"] is None if cached else r["eval_samples_per_s"] > 0
        if r["phase"] == "tune":  # scored on val only: test is for final runs
            assert 0 <= r["val_metric"] <= 1 and r["test_metric"] is None and r["outcomes"] is None
        else:  # trained on train+val, tested once; inference timed merged too
            assert r["val_metric"] is None and 0 <= r["test_metric"] <= 1
            assert r["merged_eval_samples_per_s"] > 0
            right = decode(r["outcomes"])  # one per test example, so intervals and paired tests need no rerun
            assert right.dtype == bool and right.mean() == pytest.approx(r["test_metric"])
    lora = [r for r in records if r["method"] == "lora"]
    assert all(r["trainable_params"] == 2 * 2 * (64 + 64) * 8 for r in lora)  # q,v x 2 blocks, r=8


def test_run_prints_the_results_table(tmp_path, capsys):
    store = str(tmp_path / "r.db")
    assert main(tiny_run("linear", store=store)) == 0
    out = capsys.readouterr().out
    assert "task" in out and "test" in out and "quick/digits" in out and "linear" in out


def test_leaderboard_renders_the_store(finished_store, tmp_path, capsys):
    out = tmp_path / "board" / "README.md"
    assert main(["leaderboard", "--store", finished_store, "--out", str(out)]) == 0
    text = out.read_text()
    assert "## quick on tiny-dinov2" in text
    assert "| lora |" in text and "| linear |" in text and "digits" in text and "textures" in text
    # notes go under the title as written; one that cannot be read is bad input, and the page stays
    notes = tmp_path / "notes.md"
    notes.write_text("## What the numbers say\n\nNothing yet.\n")
    assert main(["leaderboard", "--store", finished_store, "--out", str(out), "--notes", str(notes)]) == 0
    assert out.read_text().startswith("# peftbench leaderboard\n\n## What the numbers say\n\nNothing yet.\n\n")
    before = out.read_text()
    assert main(["leaderboard", "--store", finished_store, "--out", str(out), "--notes", str(tmp_path / "no")]) == 2
    assert "cannot read --notes" in capsys.readouterr().err and out.read_text() == before


def test_resume_repeats_nothing(finished_store, capsys):
    before = len(Store(finished_store).records())
    assert main(tiny_run("lora,linear", "--resume", tasks="quick", trials=1, store=finished_store)) == 0
    assert len(Store(finished_store).records()) == before
    assert "nothing to run" in capsys.readouterr().out


@pytest.mark.parametrize("argv, named", [
    (["run", "--methods", "nope", "--tasks", "quick"], "nope"),
    (["run", "--methods", "lora", "--tasks", "nosuite"], "nosuite"),
    (["run", "--methods", "lora", "--tasks", "quick/nothere"], "quick/nothere"),
    (["run", "--methods", "lora", "--tasks", "quick", "--backbone", "resnet"], "resnet"),
    (["run", "--methods", "lora", "--tasks", "quick", "--budget", "lots"], "lots"),
    (["run", "--methods", "lora", "--tasks", "quick", "--seeds", "0"], "0"),
    (["run", "--methods", "lora", "--tasks", "quick", "--epochs", "x"], "x"),
    (["run", "--methods", "", "--tasks", "quick"], "methods"),
    (["list", "things"], "things"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_is_one_line_exit_2_and_leaves_the_store_alone(finished_store, capsys, argv, named):
    before = digest(finished_store)
    assert main([*argv, "--store", finished_store] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("peftbench: error:") and "\n" not in err and named in err
    assert digest(finished_store) == before


def test_unopenable_store_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(tiny_run("linear", store=blocker / "x.db"))
    assert code == 2 and "store" in capsys.readouterr().err


def test_not_a_database_is_a_usage_error(tmp_path, capsys):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    before = digest(junk)
    assert main(["leaderboard", "--store", str(junk), "--out", str(tmp_path / "b.md")]) == 2
    assert "junk.db" in capsys.readouterr().err and digest(junk) == before


@pytest.mark.slow  # two command lines in subprocesses
def test_console_script_lists_plugins_and_fails_cleanly():
    env = cli_env()
    listed = subprocess.run([sys.executable, "-m", "peftbench.cli", "list", "methods"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0 and "BROKEN" not in listed.stdout
    for name in ("lora", "dora", "vera", "adapter", "linear", "full", "hora"):
        assert any(line.split()[0] == name for line in listed.stdout.splitlines() if line.strip()), name
    bad = subprocess.run([sys.executable, "-m", "peftbench.cli", "run", "--methods", "lora", "--tasks", "nope"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, named", [
    (["budget", "--backbone", "tiny-vit", "--budget", "10", "--methods", "lora"], "too small"),
    (["budget", "--backbone", "tiny-vit", "--budget", "lora:x=8"], "r=N"),
    (["budget", "--backbone", "tiny-vit", "--budget", "nomethod:r=8"], "nomethod"),
    (["budget", "--backbone", "tiny-vit", "--budget", "8 MB"], "8 MB"),
])
def test_bad_budgets_are_one_line_exit_2(capsys, argv, named):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and "\n" not in err


def test_a_budget_too_small_fails_before_anything_is_recorded(tmp_path, capsys):
    store = tmp_path / "r.db"
    assert main(tiny_run("lora", "--budget", "10", tasks="quick", store=store)) == 2
    assert "too small" in capsys.readouterr().err
    assert not store.exists()


def test_budget_prints_each_method_size_and_count(capsys):
    assert main(["budget", "--backbone", "tiny-vit", "--budget", "lora:r=8"]) == 0
    out = capsys.readouterr().out
    assert "4,096" in out.splitlines()[0]
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "r=8" in rows["lora"] and "100.0%" in rows["lora"]
    assert {"hora", "dora", "vera", "adapter", "linear", "full"} <= set(rows)


@pytest.mark.parametrize("tasks", ["vtab", "vtab-structured", "fgvc/cub"])
def test_a_suite_without_its_data_root_says_so_before_loading_a_model(tasks, capsys):
    assert main(["run", "--methods", "lora", "--tasks", tasks]) == 2
    assert "--data-root" in capsys.readouterr().err


def test_an_image_task_on_a_text_backbone_is_refused(capsys):
    assert main(["run", "--methods", "lora", "--tasks", "quick/digits", "--backbone", "tiny-llama"]) == 2
    assert "image input" in capsys.readouterr().err


def test_version_and_no_abbreviated_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("peftbench ")
    # '--seed' is not '--seeds': a prefix must not run 42 seeds
    assert main(["run", "--methods", "lora", "--tasks", "quick", "--seed", "42"]) == 2
    assert "unrecognized arguments: --seed 42" in capsys.readouterr().err


@pytest.mark.parametrize("argv,hint", [
    (["run", "--methods", "lroa", "--tasks", "quick"], "did you mean 'lora'?"),
    (["run", "--methods", "lora", "--tasks", "quik"], "did you mean 'quick'?"),
    (["run", "--methods", "lora", "--tasks", "quick/digts"], "did you mean 'quick/digits'?"),
    (["run", "--methods", "lora", "--tasks", "quick", "--backbone", "dinov2s"], "did you mean 'dinov2-s'?"),
])
def test_misspelt_names_get_a_suggestion(argv, hint, capsys):
    assert main(argv) == 2
    assert hint in capsys.readouterr().err


def test_task_names_are_case_insensitive():
    from peftbench import registry
    from peftbench.task import resolve_tasks

    suites = dict(registry.tasks().loaded)
    assert resolve_tasks("Quick/Digits", suites) == resolve_tasks("quick/digits", suites)
    natural = [t.id for _, t in resolve_tasks("vtab-natural", suites)]
    assert [t.id for _, t in resolve_tasks("VTAB-Natural", suites)] == natural


def test_several_budgets_size_every_method_at_each_and_run_fixed_size_methods_once(tmp_path):
    store = str(tmp_path / "r.db")
    assert main(tiny_run("lora,linear", "--budget", "2k,4k", store=store)) == 0
    rows = {(r["method"], r["budget"]): r for r in Store(store).records()}
    assert set(rows) == {("lora", "2k"), ("lora", "4k"), ("linear", "fixed")}
    assert rows[("lora", "2k")]["trainable_params"] < rows[("lora", "4k")]["trainable_params"] <= 4_040
    assert main(tiny_run("lora,linear", "--budget", "8k", "--resume", store=store)) == 0  # another budget later
    assert sum(r["method"] == "linear" for r in Store(store).records()) == 1  # not retrained, not duplicated


def test_list_methods_shows_the_variants_each_method_offers(capsys):
    assert main(["list", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    hora = lines.index(next(line for line in lines if line.startswith("hora ")))
    assert lines[hora + 1].split() == ["[share=]", "heads", "|", "none", "|", "qv", "(default", "heads)"]


@pytest.mark.parametrize("argv", [
    ["run", "--methods", "lroa", "--tasks", "quick"],
    ["run", "--methods", "lora", "--tasks", "quick/digts"],
    ["run", "--methods", "lora", "--tasks", "vtab-naturel"],
    ["run", "--methods", "lora", "--tasks", "quick", "--budget", "lots"],
])
def test_bad_names_are_refused_before_torch_loads(argv):
    """Where no model is needed, an error comes at once: neither torch nor a method plugin is imported."""
    code = ("import sys; from peftbench.cli import main; code = main(sys.argv[1:]); "
            "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'peft', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert out.stdout.split(maxsplit=1) == ["2", "[]\n"], out.stdout + out.stderr
    assert "did you mean" in out.stderr or "cannot parse budget" in out.stderr
