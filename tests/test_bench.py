"""The speed and memory benchmark on tiny random backbones: structure, ratios, references, merging.

No timing assertions: timings on a shared machine are what the benchmark reports, not what a test
can hold it to.
"""

import argparse
import copy
import json
import statistics
import subprocess
import sys

import pytest
import torch

from peftbench import bench, defaults
from peftbench.backbones import load_backbone
from peftbench.budget import budget_params, parse_budget
from peftbench.errors import UsageError
from peftbench.merging import merged_copy
from peftbench.plan import resolve_methods

torch.set_num_threads(1)

MERGEABLE = ["lora", "dora", "vera", "hora", "linear"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def bench_args(*argv):
    parser = _Parser(prog="peftbench")
    bench.add_parser(parser.add_subparsers(dest="command", parser_class=_Parser))
    return parser.parse_args(["bench", *argv])


@pytest.fixture(scope="module")
def vit_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out" / "bench.json"
    args = bench_args("--backbone", "tiny-vit", "--image-size", "32", "--batch-size", "4", "--steps", "3",
                      "--warmup", "1", "--methods", "lora,hora,vera,adapter", "--no-run-overhead", "--json", str(path))
    assert bench.cmd_bench(args) == 0
    return json.loads(path.read_text())


def test_json_has_every_contender_and_the_targets(vit_result):
    rows = {row["label"]: row for row in vit_result["rows"]}
    assert list(rows)[:2] == ["floor", "linear"]
    adapter = next(label for label in rows if label.startswith("adapter r="))
    assert {"lora r=8", "vera r=960"} <= set(rows)
    hora = [label for label in rows if label.startswith("hora")]
    assert "hora r=8" in hora  # at LoRA's rank too, since the budget gives HoRA another one
    assert vit_result["settings"]["budget_params"] == rows["lora r=8"]["trainable_params"]
    assert rows["floor"]["trainable_params"] == rows["linear"]["trainable_params"] == 0  # head excluded
    for row in rows.values():
        assert len(row["train_step_times"]) == 3
        assert row["peak_memory_mb"] > 0
    assert rows["floor"]["peak_memory_mb"] > rows["linear"]["peak_memory_mb"]  # activations kept for backward
    assert rows[adapter]["infer_merged_times"] is None  # cannot merge
    assert rows["lora r=8"]["merged_max_abs_diff"] < 1e-4
    names = [t["name"] for t in vit_result["targets"]]
    assert names[:2] == ["hora r=8 / lora r=8 train step", "lora r=8 / floor train step"]
    assert "lora r=8 merged / base inference" in names
    assert not any("adapter" in name for name in names)
    assert vit_result["run_overhead"] is None


def test_ratios_are_paired_medians_of_the_measured_times(vit_result):
    rows = {row["label"]: row for row in vit_result["rows"]}
    lora, floor = rows["lora r=8"], rows["floor"]
    assert lora["step_vs_lora"] == 1.0
    for row in rows.values():
        assert row["train_step_s"] == statistics.median(row["train_step_times"])
        expected = statistics.median(t / f for t, f in zip(row["train_step_times"], floor["train_step_times"]))
        assert row["step_vs_floor"] == pytest.approx(expected)
        assert row["memory_vs_lora"] == pytest.approx(row["peak_memory_mb"] / lora["peak_memory_mb"])
    vera = rows["vera r=960"]
    expected = statistics.median(m / b for m, b in zip(vera["infer_merged_times"], vera["infer_base_times"]))
    assert vera["merged_vs_base"] == pytest.approx(expected)


def test_each_target_is_met_at_or_under_its_limit_and_missed_over_it():
    def row(label, method, kind, train, merged=None, base=None):
        return {"label": label, "kind": kind, "method": method, "size": {"r": 2} if kind == "method" else {},
                "peak_memory_mb": 1.0, "train_step_times": train, "infer_unmerged_times": None,
                "infer_merged_times": merged, "infer_base_times": base}

    rows = [row("floor", "floor", "reference", [1.0, 1.0]),
            row("lora r=2", "lora", "method", [1.0, 1.0], merged=[1.03, 1.03], base=[1.0, 1.0]),
            row("hora r=2", "hora", "method", [1.5, 1.5], merged=[2.0, 2.0], base=[1.0, 1.0])]
    result = bench.summarise({"batch_size": 2, "reference": "lora", "challenger": "hora"}, rows, {"overhead": 0.2})
    assert [(t["name"], t["value"], t["limit"], t["met"]) for t in result["targets"]] == [
        ("hora r=2 / lora r=2 train step", 1.5, 1.10, False),  # over
        ("lora r=2 / floor train step", 1.0, 1.15, True),  # under
        ("lora r=2 merged / base inference", 1.03, 1.03, True),  # at the limit: met
        ("hora r=2 merged / base inference", 2.0, 1.03, False),
        ("harness share of run wall time", 0.2, 0.05, False),
    ]


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-llama"])
def test_floor_backpropagates_to_the_first_block_without_weight_gradients(name):
    backbone = load_backbone(name, 32)
    workload = (bench.image_workload(backbone, 2) if backbone.modality == "image"
                else bench.text_workload(backbone, 2, 8))
    model, hook = bench.floor_model(backbone, workload)
    contender = bench.Contender("floor", "reference", model, hook=hook)
    bench.train_step(contender, workload, workload.batches[0], torch.device("cpu"))
    encoder = model.encoder if backbone.modality == "image" else model
    assert all(p.grad is None for p in encoder.parameters())
    assert hook.inputs is not None and hook.inputs.grad is not None and hook.inputs.grad.abs().sum() > 0
    assert contender.trainable_params == 0


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-llama"])
@pytest.mark.parametrize("method_name", MERGEABLE)
def test_merged_copy_computes_what_the_adapted_model_does(name, method_name):
    backbone = load_backbone(name, 32)
    method = resolve_methods(method_name)[method_name]
    assert method.mergeable
    size = {"r": 4} if method.knobs else {}
    torch.manual_seed(0)
    adapted = method.apply(copy.deepcopy(backbone), size, dict(method.defaults))
    with torch.no_grad():  # move away from the identity start, so the merge has something to add
        for p in adapted.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    workload = (bench.image_workload(backbone, 2) if backbone.modality == "image"
                else bench.text_workload(backbone, 2, 8))
    model = workload.wrap(adapted).eval()
    merged = merged_copy(model)
    assert not any("lora_" in n or "hora_" in n or "vera_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        batch = workload.batches[0]
        expected, got = workload.infer(model, batch), workload.infer(merged, batch)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    if method_name != "linear":  # the original keeps its adapters
        assert any(p.requires_grad for p in model.parameters() if p.ndim)
        assert len(list(model.parameters())) > len(list(merged.parameters()))


def test_harness_overhead_run(tmp_path):
    result = bench.run_bench("tiny-vit", methods="lora", image_size=32, batch_size=8, steps=1, warmup=0,
                             run_options="--epochs 1 --max-train-examples 16 --max-eval-examples 16",
                             log=lambda _: None)
    o = result["run_overhead"]
    assert o["task"] == "quick/digits" and o["train_steps"] == 2
    sweep = o["sweep"]  # the sweep API's own options: the benchmark's, no tuning, one seed, and the user's
    assert sweep["methods"] == defaults.BENCH_REFERENCE and sweep["tasks"] == "quick/digits"
    assert {k: sweep["options"][k] for k in ("backbone", "batch_size", "image_size", "trials", "seeds", "epochs",
                                             "max_train_examples", "max_eval_examples", "progress")} == {
        "backbone": "tiny-vit", "batch_size": 8, "image_size": 32, "trials": 0, "seeds": 1, "epochs": 1,
        "max_train_examples": 16, "max_eval_examples": 16, "progress": False}
    assert sweep["options"]["adapters_dir"].startswith("TMP")
    assert o["record"]["train_seconds"] > 0 and o["eval_examples"] == 16
    assert o["wall_s"] > 0 and o["compute_s"] > 0
    assert o["wall_vs_compute"] == pytest.approx(o["wall_s"] / o["compute_s"])
    assert o["overhead"] == pytest.approx(1 - o["compute_s"] / o["wall_s"])
    assert result["targets"][-1]["name"] == "harness share of run wall time"
    # the run's fixed costs: planning once per process, then each part of the run outside its loops
    assert set(o["fixed_s"]) == {"plan", "setup", "test", "merged_speed", "save"}
    assert all(seconds > 0 for seconds in o["fixed_s"].values())
    assert o["fixed_s"]["plan"] < o["wall_s"]
    # the loader alone on the same task's training split, beside the reference's training step
    feed = result["loader"]
    assert feed["task"] == "quick/digits" and feed["workers"] == 0  # in memory, on a CPU
    assert feed["batches"] > 0 and feed["samples_per_s"] > 0
    assert feed["vs_train_step"] == pytest.approx(feed["samples_per_s"] / feed["train_samples_per_s"])
    report = bench.format_report(result)
    assert "fixed costs of that run (s): plan " in report and "loader: quick/digits training split" in report


def test_run_options_map_to_the_sweep_options():
    assert bench.parse_run_options("--epochs 1 --max-train-examples 16 --targets q,v") == {
        "epochs": 1, "max_train_examples": 16, "targets": ("q", "v")}
    assert bench.parse_run_options("") == {}
    for text, message in (("--trials 3", "unrecognized arguments: --trials"), ("--epochs 0", "must be positive"),
                          ("--epochs '1", "No closing quotation")):
        with pytest.raises(UsageError, match=message):
            bench.parse_run_options(text)


def test_sizes_in_the_shared_syntax_and_another_reference():
    backbone = load_backbone("tiny-vit", 32)
    target = budget_params(parse_budget("lora[r=8]"), backbone, resolve_methods("lora"))
    sized = bench.sized_methods("hora[r=8,hidden=16],vera,lora:r=4", backbone, target, "lora", "hora")
    assert [m.name for m, _ in sized] == ["hora", "hora", "vera", "lora"]  # hora at lora's rank too
    assert [size for _, size in sized[:2]] == [{"r": 8, "hidden": 16}, {"r": 4}] and sized[3][1] == {"r": 4}
    variant = bench.sized_methods("hora[share=none,r=4]", backbone, target, "lora", "hora")
    assert [(m.name, size) for m, size in variant][1] == ("hora[share=none]", {"r": 4})
    # another reference: it is added first, and the challenger is measured at its rank too
    smaller = budget_params(parse_budget("lora[r=4]"), backbone, resolve_methods("lora"))
    dora = bench.sized_methods("hora", backbone, smaller, "dora", "hora")
    assert [m.name for m, _ in dora] == ["dora", "hora", "hora"]
    assert dora[2][1] == {"r": dora[0][1]["r"]} != dora[1][1]


def test_ratios_divide_by_the_reference_the_settings_name():
    def row(label, method, times, memory):
        return {"label": label, "kind": "method", "method": method, "size": {"r": 2}, "peak_memory_mb": memory,
                "train_step_times": times, **{f"infer_{v}_times": None for v in ("unmerged", "merged", "base")}}
    rows = [row("floor", "floor", [1.0, 1.0], 1.0), row("dora r=2", "dora", [2.0, 4.0], 4.0),
            row("hora r=2", "hora", [3.0, 4.0], 2.0)]
    result = bench.summarise({"batch_size": 2, "reference": "dora", "challenger": "hora"}, rows, None)
    hora = result["rows"][2]
    assert hora["step_vs_lora"] == pytest.approx(statistics.median([1.5, 1.0]))
    assert hora["memory_vs_lora"] == 0.5
    assert [t["name"] for t in result["targets"]] == ["hora r=2 / dora r=2 train step", "dora r=2 / floor train step"]


def test_the_command_line_parser_imports_neither_torch_nor_the_measurements():
    code = ("import sys; from peftbench.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m == 'peftbench.merging'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv, message", [
    (["--methods", "lora,nosuch"], "unknown method 'nosuch'"),
    (["--methods", "lora[r=x]"], "cannot parse method size"),
    (["--methods", "hora[k=3]"], "hora takes r"),
    (["--methods", "hora[hidden=16]"], "hora takes r"),
    (["--methods", "lora[r=8"], "unbalanced brackets"),
    (["--run-options", "--trials 2"], "--run-options: unrecognized arguments"),
    (["--budget", "lots"], "cannot parse budget"),
    (["--steps", "0"], "--steps must be positive"),
    (["--backbone", "nosuch"], "unknown backbone 'nosuch'"),
    (["--image-size", "0"], "--image-size must be positive"),
    (["--steps", "two"], "invalid int value"),
])
def test_bad_input_is_a_usage_error(argv, message):
    with pytest.raises(UsageError, match=message):
        bench.cmd_bench(bench_args("--backbone", "tiny-vit", "--image-size", "32", "--no-run-overhead", *argv))


def test_the_reference_is_timed_in_fp32_and_bf16_where_the_hardware_has_bf16(vit_result):
    import torch

    from peftbench.compute import native_bf16

    p = vit_result["precision"]
    if not native_bf16(torch.device("cpu")):
        assert p is None
        return
    assert p["method"] == "lora r=8" and len(p["times"]["fp32"]) == len(p["times"]["bf16"]) == 3
    assert p["fp32_step_s"] == statistics.median(p["times"]["fp32"])
    expected = statistics.median(b / f for b, f in zip(p["times"]["bf16"], p["times"]["fp32"]))
    assert p["bf16_vs_fp32"] == pytest.approx(expected)


def test_the_overhead_run_and_the_loader_read_a_task_from_its_data_root(tmp_path):
    from conftest import make_vtab

    make_vtab(tmp_path, name="patch_camelyon", classes=2, sizes=(8, 4, 6))
    result = bench.run_bench("tiny-vit", methods="lora", image_size=32, batch_size=4, steps=1, warmup=0,
                             run_task="vtab/patch_camelyon", run_options=f"--epochs 1 --data-root {tmp_path}",
                             log=lambda _: None)
    assert "error" not in result["run_overhead"] and result["run_overhead"]["eval_examples"] == 6
    feed = result["loader"]
    # image files, decoded in the training process on a CPU
    assert feed["task"] == "vtab/patch_camelyon" and feed["workers"] == 0 and feed["samples_per_s"] > 0
