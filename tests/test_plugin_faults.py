"""A third-party plugin's fault or refusal stays inside that plugin: the other methods and tasks run,
the command never shows a traceback, names and defaults are what they say."""

import pytest
from conftest import install_package, tiny_run

from peftbench import registry
from peftbench.cli import main
from peftbench.plan import resolve_methods
from peftbench.store import Store

PLUGIN = '''
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from peftbench.data import vtab_indices
from peftbench.errors import UsageError
from peftbench.method import Method
from peftbench.task import Splits, Suite, Task


class BitFit(Method):
    """Trains the biases of the backbone's Linears; refuses a backbone that has none."""
    name = "bitfit"
    knobs = ()
    options = {"scope": ("linear", "all")}
    defaults = {"lr": 1e-3, "weight_decay": 0.0, "scope": "linear"}  # no weight decay: outside the space

    def sizes(self, backbone):
        return [{}]

    def biases(self, module):
        return [m.bias for m in module.modules() if isinstance(m, nn.Linear) and m.bias is not None]

    def check(self, backbone):
        if not self.biases(backbone.module):
            raise UsageError(f"{backbone.name} has no biases to train")

    def count(self, backbone, size):
        return sum(b.numel() for b in self.biases(backbone.module))

    def apply(self, backbone, size, hparams):
        module = backbone.module.requires_grad_(False)
        for bias in self.biases(module):
            bias.requires_grad_(True)
        return module


class DetachedBias(BitFit):
    """Unfreezes every bias, then leaves the first Linear's out of the gradient: it never trains."""
    name = "detached-bias"

    def apply(self, backbone, size, hparams):
        module = super().apply(backbone, size, hparams)
        first = next(m for m in module.modules() if isinstance(m, nn.Linear) and m.bias is not None)
        first.forward = lambda x: F.linear(x, first.weight, first.bias.detach())
        return module


def random_splits(labels_high, n=64):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 28, 28, generator=g), torch.randint(0, labels_high, (n,), generator=g)
    part = TensorDataset(x, y)
    return Splits(part, part, part, part)


def raises(image_size, mean, std, data_root=None):
    raise ValueError("corrupt cache")


def too_few(image_size, mean, std, data_root=None):
    vtab_indices(300)


def wide_labels(image_size, mean, std, data_root=None):
    return random_splits(labels_high=6)


class Opaque(torch.utils.data.Dataset):
    """Labels readable only by indexing (as a dataset that decodes files)."""

    def __init__(self, part):
        self.part = part

    def __len__(self):
        return len(self.part)

    def __getitem__(self, i):
        return self.part[i]


def opaque_labels(image_size, mean, std, data_root=None):
    return Splits(*[Opaque(random_splits(labels_high=6).train)] * 4)


FAULTY = Suite("faulty", (
    Task("faulty", "raises", "g", "image", 3, raises),
    Task("faulty", "opaque", "g", "image", 3, opaque_labels),
    Task("faulty", "too-few", "g", "image", 3, too_few),
    Task("faulty", "labels", "g", "image", 3, wide_labels),
), recipe={"backbone": "tiny-dinov2", "image_size": 28, "epochs": 1, "batch_size": 16, "trials": 0, "seeds": 1})

ODD = Suite("odd", (Task("elsewhere", "one", "g", "image", 3, wide_labels),))
'''

ENTRY_POINTS = """
    [peftbench.methods]
    bitfit = faulty_plugins:BitFit
    detached-bias = faulty_plugins:DetachedBias
    misnamed = faulty_plugins:BitFit

    [peftbench.tasks]
    faulty = faulty_plugins:FAULTY
    odd = faulty_plugins:ODD
"""


@pytest.fixture
def faulty(tmp_path, monkeypatch):
    yield install_package(tmp_path, monkeypatch, "faulty_plugins", PLUGIN, ENTRY_POINTS)
    registry.plugins.cache_clear()


def records(store) -> list[dict]:
    return Store(str(store)).records()


def test_a_task_that_raises_fails_its_runs_with_the_reason_and_the_others_run(faulty, capsys):
    store = faulty / "r.db"
    assert main(tiny_run("linear", tasks="faulty/raises,quick/digits", store=store)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    by_task = {f"{r['suite']}/{r['task']}": r for r in records(store)}
    assert by_task["quick/digits"]["status"] == "ok"
    assert by_task["faulty/raises"]["status"] == "failed"
    assert by_task["faulty/raises"]["error"].endswith("task faulty/raises failed to load: ValueError: corrupt cache")


def test_a_split_too_small_is_one_line_naming_the_task_exit_2(faulty, capsys):
    store = faulty / "r.db"
    assert main(tiny_run("linear", tasks="faulty/too-few", store=store)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "faulty/too-few" in err and "need more than 1000 examples" in err
    assert not store.exists()


def test_labels_outside_the_class_count_name_the_task_and_the_count(faulty):
    store = faulty / "r.db"
    assert main(tiny_run("linear", tasks="faulty/labels", store=store)) == 1
    (record,) = records(store)
    assert "task faulty/labels failed to load" in record["error"]
    assert "outside its 3 classes (0..2)" in record["error"]


def test_labels_out_of_range_found_while_training_name_the_class_count(faulty):
    store = faulty / "r.db"
    assert main(tiny_run("lora", tasks="faulty/opaque", store=store)) == 1
    (record,) = records(store)
    assert "labels must lie in 0..2: the task's 3 classes" in record["error"]


def test_a_refusing_method_is_a_row_in_budget_and_the_others_are_sized(faulty, capsys):
    assert main(["budget", "--backbone", "tiny-llama", "--methods", "bitfit,lora"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "refused: bitfit: tiny-llama has no biases to train" in rows["bitfit"]
    assert "100.0%" in rows["lora"]


def test_a_budget_too_small_for_one_method_skips_its_cells_and_the_others_run(faulty, capsys):
    store = faulty / "r.db"
    assert main(tiny_run("lora,bitfit", "--budget", "100", store=store)) == 0
    assert "skipped: budget of 100 parameters is too small for lora" in capsys.readouterr().err
    assert [r["method"] for r in records(store)] == ["bitfit"]


def test_a_plugin_registered_under_another_name_is_listed_as_broken(faulty):
    found = registry.methods()
    assert "misnamed" not in found.loaded
    assert "registered as 'misnamed', but its method is named 'bitfit'" in found.broken["misnamed"]
    tasks = registry.tasks()
    assert "odd" not in tasks.loaded
    assert "task 'one' of suite 'odd' says its suite is 'elsewhere'" in tasks.broken["odd"]


def test_the_first_trial_runs_a_default_outside_the_space_as_it_is(faulty):
    store = faulty / "r.db"
    assert main(tiny_run("bitfit", "--trials", "2", store=store)) == 0
    first = next(r for r in records(store) if r["phase"] == "tune" and r["details"]["slot"] == 0)
    assert first["hparams"]["weight_decay"] == 0.0
    assert first["details"]["defaults_outside_space"] == {"weight_decay": 0.0}
    second = next(r for r in records(store) if r["phase"] == "tune" and r["details"]["slot"] == 1)
    assert "defaults_outside_space" not in second["details"] and second["hparams"]["weight_decay"] > 0


def test_the_gradient_contract_covers_backbone_parameters_a_method_unfreezes(faulty):
    store = faulty / "r.db"
    assert main(tiny_run("detached-bias,bitfit", store=store)) == 1
    by_method = {r["method"]: r for r in records(store)}
    assert by_method["bitfit"]["status"] == "ok"
    assert by_method["detached-bias"]["status"] == "failed"
    assert "adapter not active" in by_method["detached-bias"]["error"]


def test_an_option_at_its_default_is_the_plain_method(faulty):
    assert list(resolve_methods("bitfit[scope=linear],bitfit")) == ["bitfit"]
    assert list(resolve_methods("bitfit[scope=all],bitfit")) == ["bitfit[scope=all]", "bitfit"]
