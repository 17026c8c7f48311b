"""Third-party plugins: found after install through entry points; broken ones are skipped."""

import subprocess
import sys

import pytest
from conftest import cli_env, install_package, tiny_run

from peftbench import registry
from peftbench.cli import main
from peftbench.store import Store

PLUGIN = '''
from peft import LoraConfig
from peftbench.method import PeftMethod, linear_shapes


class Diverging(PeftMethod):
    """Trains, but its loss is infinite from the first step."""
    name = "diverging"
    knobs = ()

    def sizes(self, backbone):
        return [{}]

    def count(self, backbone, size):
        return 0

    def apply(self, backbone, size, hparams):
        backbone.module.requires_grad_(False).register_forward_hook(lambda module, args, out: out * float("inf"))
        return backbone.module


class Exploding(Diverging):
    """Raises while applying itself."""
    name = "exploding"

    def apply(self, backbone, size, hparams):
        raise RuntimeError("no adapter for you")


class HalfCount(PeftMethod):
    """LoRA on q and v whose count() says half of what it trains."""
    name = "half-count"

    def count(self, backbone, size):
        return sum((i + o) * size["r"] for i, o in linear_shapes(backbone.module, backbone.target_modules)) // 2

    def peft_config(self, backbone, size, hparams):
        return LoraConfig(r=size["r"], lora_alpha=size["r"], target_modules=backbone.target_modules)


class CountRaises(HalfCount):
    name = "count-raises"

    def count(self, backbone, size):
        raise ValueError("cannot count today")


class Dropped(HalfCount):
    """Adds LoRA factors, then leaves them out of the forward pass."""
    name = "dropped"

    def count(self, backbone, size):
        return 2 * super().count(backbone, size)

    def apply(self, backbone, size, hparams):
        model = super().apply(backbone, size, hparams)
        model.base_model.disable_adapter_layers()
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        return model


class Inert(PeftMethod):
    """A parameter that reaches the output with no effect: connected, but it never changes it."""
    name = "inert"
    knobs = ()

    def sizes(self, backbone):
        return [{}]

    def count(self, backbone, size):
        return 8

    def apply(self, backbone, size, hparams):
        import torch

        module = backbone.module.requires_grad_(False)
        module.inert = torch.nn.Parameter(torch.ones(8))
        module.register_forward_hook(lambda m, args, out: out + 0.0 * m.inert.sum())
        return module


class QueryOnlyLoRA(PeftMethod):
    """A third party's method: LoRA on the query projection alone."""
    name = "qlora-only"
    description = "LoRA on q only (third-party example)"

    def count(self, backbone, size):
        return sum((i + o) * size["r"] for i, o in linear_shapes(backbone.module, [backbone.layout.q]))

    def peft_config(self, backbone, size, hparams):
        return LoraConfig(r=size["r"], lora_alpha=size["r"], target_modules=[backbone.layout.q])
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package as pip would leave it: a module and a dist-info folder with entry points."""
    yield install_package(tmp_path, monkeypatch, "thirdparty_peft", PLUGIN, """
        [peftbench.methods]
        qlora-only = thirdparty_peft:QueryOnlyLoRA
        diverging = thirdparty_peft:Diverging
        exploding = thirdparty_peft:Exploding
        half-count = thirdparty_peft:HalfCount
        count-raises = thirdparty_peft:CountRaises
        dropped = thirdparty_peft:Dropped
        inert = thirdparty_peft:Inert
        broken = thirdparty_missing_module:Nothing

        [peftbench.tasks]
        brokensuite = thirdparty_missing_module:SUITE
    """)
    registry.plugins.cache_clear()


@pytest.mark.slow  # the command line in a subprocess
def test_list_shows_third_party_and_broken_plugins_by_name(installed_plugin):
    out = subprocess.run([sys.executable, "-m", "peftbench.cli", "list", "methods"], capture_output=True,
                         text=True, timeout=120, env=cli_env())
    assert out.returncode == 0
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "[thirdparty-peft]" in lines["qlora-only"]
    assert "BROKEN" in lines["broken"] and "thirdparty_missing_module" in lines["broken"]
    assert "[peftbench]" in lines["lora"]  # the others still load


def test_a_third_party_method_runs_like_a_built_in(installed_plugin, tmp_path):
    store = str(tmp_path / "r.db")
    argv = tiny_run("qlora-only,lora", store=store)
    assert main(argv) == 0
    counts = {r["method"]: r["trainable_params"] for r in Store(store).records()}
    assert counts["qlora-only"] == counts["lora"] > 0  # equal budgets: r=16 on q alone = r=8 on q and v


def test_a_broken_plugin_is_reported_by_name_and_its_runs_fail_while_the_others_run(installed_plugin, tmp_path,
                                                                                   capsys):
    store = str(tmp_path / "r.db")
    argv = tiny_run("broken,linear", store=store)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "method plugin 'broken' failed to load" in err and "thirdparty_missing_module" in err
    records = {r["method"]: r for r in Store(store).records()}
    assert records["linear"]["status"] == "ok"
    assert records["broken"]["status"] == "failed" and "thirdparty_missing_module" in records["broken"]["error"]


def test_asking_for_a_broken_task_plugin_names_it(installed_plugin, capsys):
    assert main(["run", "--methods", "linear", "--tasks", "brokensuite"]) == 2
    err = capsys.readouterr().err
    assert "task plugin 'brokensuite' failed to load" in err and "thirdparty_missing_module" in err


def test_failing_methods_are_recorded_with_the_reason_and_the_sweep_goes_on(installed_plugin, tmp_path):
    store = str(tmp_path / "r.db")
    argv = tiny_run("diverging,exploding,linear", store=store)
    assert main(argv) == 1  # some runs failed, the others ran
    records = {r["method"]: r for r in Store(store).records()}
    assert records["linear"]["status"] == "ok"
    assert records["diverging"]["status"] == "failed" and "TrainingDiverged" in records["diverging"]["error"]
    assert records["exploding"]["status"] == "failed" and "no adapter for you" in records["exploding"]["error"]


def test_a_count_that_lies_fails_its_runs_with_both_numbers_and_the_others_run(installed_plugin, tmp_path):
    store = str(tmp_path / "r.db")
    assert main(tiny_run("half-count,lora", store=store)) == 1
    records = {r["method"]: r for r in Store(store).records()}
    assert records["lora"]["status"] == "ok" and records["lora"]["trainable_params"] == 4096
    lie = records["half-count"]
    assert lie["status"] == "failed"
    assert "count() said 4,096 trainable parameters, the model trains 8,192" in lie["error"]


def test_a_count_that_raises_fails_its_runs_without_a_traceback(installed_plugin, tmp_path, capsys):
    store = str(tmp_path / "r.db")
    assert main(tiny_run("count-raises,linear", store=store)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    records = {r["method"]: r for r in Store(store).records()}
    assert records["linear"]["status"] == "ok"
    assert records["count-raises"]["status"] == "failed"
    assert "ValueError: cannot count today" in records["count-raises"]["error"]


@pytest.mark.slow  # the command line in a subprocess
def test_budget_reports_a_raising_count_and_sizes_the_others(installed_plugin):
    out = subprocess.run([sys.executable, "-m", "peftbench.cli", "budget", "--backbone", "tiny-vit",
                          "--methods", "count-raises,lora"], capture_output=True, text=True, timeout=120,
                         env=cli_env())
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "cannot count today" in lines["count-raises"]
    assert "100.0%" in lines["lora"]


@pytest.mark.parametrize("method,why", [("dropped", "get no gradient"), ("inert", "outputs equal the base model's")])
def test_an_adapter_left_out_of_the_forward_pass_fails_as_not_active(installed_plugin, tmp_path, method, why):
    store = str(tmp_path / "r.db")
    assert main(tiny_run(f"{method},lora", store=store)) == 1
    records = {r["method"]: r for r in Store(store).records()}
    assert records["lora"]["status"] == "ok"
    assert records[method]["status"] == "failed"
    assert "adapter not active" in records[method]["error"] and why in records[method]["error"]
