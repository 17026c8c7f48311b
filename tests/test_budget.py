import pytest
import timm
import torch

from peftbench.backbones import load_backbone
from peftbench.backbones.encoders import timm_backbone
from peftbench.budget import TOLERANCE, parse_budget, solve, budget_params
from peftbench.errors import UsageError
from peftbench.registry import methods


def all_methods():
    return {name: cls() for name, cls in methods().loaded.items()}


def test_lora_r8_on_vit_b16_matches_the_literature_count():
    with torch.device("meta"):  # shapes only: no 86M-parameter random init
        model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        backbone = timm_backbone("vit-b16", model, 224)
    assert all_methods()["lora"].count(backbone, {"r": 8}) == 294_912


@pytest.mark.parametrize("text,params", [("0.3M", 300_000), ("300k", 300_000), ("294912", 294_912), ("1.5m", 1_500_000)])
def test_parse_counts(text, params):
    assert parse_budget(text).params == params


def test_parse_reference():
    budget = parse_budget("lora:r=8")
    assert (budget.method, budget.size) == ("lora", {"r": 8})


@pytest.mark.parametrize("text", ["", "abc", "0.3X", "-5k", "0", "lora:r=", "lora:r=x", "lora r=8"])
def test_parse_rejects_garbage(text):
    with pytest.raises(UsageError):
        parse_budget(text)


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-dinov2", "tiny-llama"])
@pytest.mark.parametrize("budget", ["lora:r=8", "lora:r=2", "20k"])
def test_solver_hits_every_method_within_tolerance(name, budget):
    backbone = load_backbone(name)
    registered = all_methods()
    target = budget_params(parse_budget(budget), backbone, registered)
    for method in registered.values():
        if not method.knobs:
            continue
        sizing = solve(method, backbone, target)
        assert sizing.count <= target * (1 + TOLERANCE), method.name
        assert sizing.count == method.count(backbone, sizing.size)
        counts = sorted(method.count(backbone, size) for size in method.sizes(backbone))
        admissible = [c for c in counts if c <= target * (1 + TOLERANCE)]
        assert min(abs(c - target) for c in admissible) == abs(sizing.count - target), method.name
        if sizing.reached and sizing.count < target * (1 - TOLERANCE):
            # below by more than 5% only where the knob is too coarse to land closer
            assert counts[-1] > target * (1 + TOLERANCE), method.name


def test_budget_too_small_is_a_usage_error():
    backbone = load_backbone("tiny-vit")
    with pytest.raises(UsageError, match="too small"):
        solve(all_methods()["lora"], backbone, 10)
