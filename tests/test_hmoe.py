"""The hmoe teacher-student suite: its data, its teacher's structure, and runs that adapt the student."""

import copy
import math

import pytest
import torch

from peftbench import registry
from peftbench.backbones import load_backbone
from peftbench.budget import budget_params, parse_budget, solve
from peftbench.cli import main
from peftbench.kinds import KINDS
from peftbench.board.markdown import page as render
from peftbench.plan import resolve_methods
from peftbench.store import Store
from peftbench.tasks import hmoe


@pytest.fixture(scope="module")
def splits():
    return {task.name: task.load(None, None, None, None) for task in hmoe.HMOE.tasks}


def test_suite_is_registered_as_a_lower_is_better_regression():
    suite = registry.tasks().loaded["hmoe"]
    assert [t.name for t in suite.tasks] == ["shared", "independent"]
    for task in suite.tasks:
        assert (task.kind, task.metric, task.higher_is_better, task.needs_data_root) == ("regress", "mse", False, False)
    assert suite.recipe["backbone"] == "hmoe-attention" and task.modality == load_backbone("hmoe-attention").modality


def test_splits_have_the_stated_sizes_and_shapes_and_repeat(splits):
    data = splits["shared"]
    assert (len(data.train), len(data.val), len(data.trainval), len(data.test)) == (15_360, 1_024, 16_384, 4_096)
    x, y = data.trainval[0]
    assert x.shape == y.shape == (hmoe.TOKENS, 32)
    again = hmoe.HMOE.tasks[0].load(None, None, None, None)
    assert torch.equal(again.trainval.tensors[1], data.trainval.tensors[1])
    assert torch.equal(again.test.tensors[0], data.test.tensors[0])
    # the two tasks share inputs and differ only in the teacher
    assert torch.equal(splits["independent"].test.tensors[0], data.test.tensors[0])
    assert not torch.equal(splits["independent"].test.tensors[1], data.test.tensors[1])


def test_student_is_deterministic_and_frozen():
    a, b = load_backbone("hmoe-attention"), load_backbone("hmoe-attention")
    for (name, p), q in zip(a.module.named_parameters(), b.module.parameters()):
        assert torch.equal(p, q) and not p.requires_grad, name
    x = torch.randn(3, hmoe.TOKENS, 32)
    assert a.module(x).shape == x.shape


@pytest.mark.parametrize("structure", hmoe.STRUCTURES)
def test_frozen_student_is_one_unit_of_error_and_test_targets_are_noiseless(splits, structure):
    data = splits[structure]
    student = load_backbone("hmoe-attention").module
    x, y = data.test.tensors
    with torch.no_grad():
        assert (student(x) - y).pow(2).mean().item() == pytest.approx(1.0, abs=0.05)
        # train targets carry the noise: the teacher's own residual there is the noise variance
        teacher = hmoe.teacher(structure, x[:1024])
        xt, yt = data.trainval.tensors
        assert (teacher(xt[:2048]) - yt[:2048]).pow(2).mean().item() == pytest.approx(hmoe.NOISE ** 2, rel=0.05)
        assert torch.allclose(teacher(x[:256]), y[:256], atol=1e-5)


def test_shared_teacher_heads_span_fewer_dimensions_than_there_are_heads():
    shared, independent = hmoe.head_updates("shared"), hmoe.head_updates("independent")
    assert shared.shape == independent.shape == (8, 2 * 4 * hmoe.RANK)
    # every head's update is W2 tanh(...): inside W2's column space, MAP_WIDTH < 8 heads
    assert torch.linalg.matrix_rank(shared).item() == hmoe.MAP_WIDTH
    assert torch.linalg.matrix_rank(independent).item() == 8
    for d_w in hmoe.weight_updates("shared"):
        assert torch.linalg.matrix_rank(d_w).item() == hmoe.RANK


@pytest.mark.parametrize("name", ["lora", "hora"])
def test_lora_and_hora_adapt_q_and_v_of_the_student(splits, name):
    backbone = load_backbone("hmoe-attention")
    method = resolve_methods(name)[name]
    target = budget_params(parse_budget("lora:r=8"), backbone, resolve_methods("lora"))
    sizing = solve(method, backbone, target)
    torch.manual_seed(0)
    model = method.apply(copy.deepcopy(backbone), sizing.size, method.defaults)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == method.count(backbone, sizing.size) <= 1.05 * target
    assert all("q_proj" in n or "v_proj" in n or "hora_generator" in n for n in trainable), sorted(trainable)
    x, y = splits["shared"].test.tensors
    with torch.no_grad():  # the adapted model starts as the frozen student
        assert torch.allclose(model(x[:64]), backbone.module(x[:64]), atol=1e-6)
    kind = KINDS["regress"]
    before = kind.score(model, backbone, splits["shared"].test, {}).metric
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    xs, ys = splits["shared"].trainval.tensors
    for step in range(30):
        batch = slice(step * 64, (step + 1) * 64)
        loss = torch.nn.functional.mse_loss(model(xs[batch]), ys[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert kind.score(model, backbone, splits["shared"].test, {}).metric < 0.9 * before


@pytest.mark.slow  # a sweep of three methods
def test_a_short_run_records_mse_and_the_leaderboard_ranks_it_lower_is_better(store_path, tmp_path, capsys):
    assert main(["run", "--methods", "lora,hora,linear", "--tasks", "hmoe/shared", "--trials", "0", "--seeds", "1",
                 "--epochs", "1", "--store", store_path, "--no-progress"]) == 0
    records = {r["method"]: r for r in Store(store_path).records()}
    assert set(records) == {"lora", "hora", "linear"}
    for r in records.values():
        assert (r["status"], r["metric"], r["phase"], r["backbone"]) == ("ok", "mse", "final", "hmoe-attention")
        assert math.isfinite(r["test_metric"]) and r["head_params"] == 0
    assert records["linear"]["test_metric"] == pytest.approx(1.0, abs=0.05)  # the frozen student: the floor
    assert records["lora"]["test_metric"] < 0.9 and records["hora"]["test_metric"] < 0.95
    assert records["lora"]["trainable_params"] == 1024 and 0 < records["hora"]["trainable_params"] <= 1075
    text = render(Store(store_path), tmp_path / "README.md")
    assert "## hmoe on hmoe-attention" in text and "lower is better" in text
    scores = text.split("## hmoe on hmoe-attention")[1].split("###")[0]  # the scores table
    shown = {line.split("|")[1].strip(): line.split("|")[3] for line in scores.splitlines()
             if line.startswith(("| lora |", "| hora |", "| linear |"))}
    assert min(shown, key=lambda m: float(shown[m].split("(")[0])) == min(
        records.values(), key=lambda r: r["test_metric"])["method"]
    assert not any("**" in cell for cell in shown.values())  # one seed: nothing tested, nothing bold
