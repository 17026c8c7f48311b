import collections
import copy
import dataclasses
import functools

import pytest
import timm
import torch

from peftbench.backbones import load_backbone
from peftbench.backbones.encoders import hf_image_backbone, hf_text_backbone, timm_backbone
from peftbench import budget as budget_module
from peftbench.budget import budget_params, parse_budget, solve
from peftbench.errors import UsageError
from peftbench.method import Method, target_names
from peftbench.registry import methods


#: the spec: a method lands within 1% of the budget, never above it by more (the solver's own constant
#: is checked against it, not used in its place)
BAND = 0.01


def test_solver_tolerance_is_one_percent():
    assert budget_module.TOLERANCE == BAND


def all_methods():
    """The hand-written methods, whose counts are closed forms; the peft family's members count on a
    weightless copy and are sized in test_tuner_battery.py."""
    return {name: cls() for name, cls in methods().loaded.items() if name not in methods().from_family}


SIZED = sorted(name for name, method in all_methods().items() if method.knobs)
REAL = ("vit-b16", "dinov2-s", "smollm2-135m")
TINY = ("tiny-vit", "tiny-dinov2", "tiny-llama")
BUDGETS = (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)


@functools.cache
def backbone(name: str):
    """The real backbones as shapes only (meta device: no weights, no download); the tiny ones from the
    registry. Cached so the methods' per-module shape caches survive across the grid."""
    if name in TINY:
        return load_backbone(name)
    with torch.device("meta"):
        if name == "vit-b16":
            model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
            return timm_backbone("vit-b16", model, 224)
        if name == "dinov2-s":
            from transformers import Dinov2Config, Dinov2Model

            config = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                  intermediate_size=1536, patch_size=14, image_size=518)
            return hf_image_backbone("dinov2-s", Dinov2Model(config), 518)
        if name == "smollm2-135m":
            from transformers import LlamaConfig, LlamaForCausalLM

            config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                 num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
            return hf_text_backbone("smollm2-135m", LlamaForCausalLM(config), None)
    raise KeyError(name)


@functools.cache
def method(name: str):
    return all_methods()[name]


def largest_size(m, b) -> dict:
    return collections.deque(m.sizes(b), maxlen=1)[0]


# The only (backbone, budget, method) cells of the grid on the real backbones that land outside 1%
# of the budget. "cap": the method's largest size stays below the budget; "step": two consecutive
# sizes straddle the 1% band.
EXPECTED_MISSES = {
    # VeRA trains one scalar per rank and layer: even at its rank cap (max_rank, set by the memory
    # of its frozen projections) it stays below the large budgets
    ("vit-b16", 3_000_000, "vera"): "cap",
    ("vit-b16", 10_000_000, "vera"): "cap",
    ("dinov2-s", 1_000_000, "vera"): "cap",
    ("dinov2-s", 3_000_000, "vera"): "cap",
    ("dinov2-s", 10_000_000, "vera"): "cap",
    ("smollm2-135m", 10_000_000, "vera"): "cap",
    # rank <= hidden size (384): at full rank on q and v of 12 blocks, ~7.1M parameters
    ("dinov2-s", 10_000_000, "lora"): "cap",
    ("dinov2-s", 10_000_000, "dora"): "cap",
    ("dinov2-s", 10_000_000, "adapter"): "cap",
    # HoRA adapts the Llama MLP (up, down) with plain LoRA of the same rank r, 30 x 2112 parameters a
    # rank, which the generator's width cannot span near 300k: no (r, hidden) lands within 1%
    ("smollm2-135m", 300_000, "hora"): "step",
}


def lora_max(b) -> int:
    return method("lora").count(b, {"r": b.layout.hidden_size, "plus1": 0})


def admissible(m, b, target):
    """(size, count) for every size that does not exceed the budget by more than the tolerance."""
    for size in m.sizes(b):
        count = m.count(b, size)
        if count > target * (1 + BAND):
            return
        yield size, count


# budgets above 100k only in the full suite: their large sizes take ~20 s of the grid's ~22 s
@pytest.mark.parametrize("name", SIZED)
@pytest.mark.parametrize("target", [pytest.param(t, marks=pytest.mark.slow) if t > 100_000 else t for t in BUDGETS])
@pytest.mark.parametrize("bb", REAL + TINY)
def test_solver_grid(bb, target, name):
    b, m = backbone(bb), method(name)
    smallest = next(iter(m.sizes(b)))
    try:
        sizing = solve(m, b, target)
    except UsageError as exc:
        assert "too small" in str(exc) and m.name in str(exc)
        assert m.count(b, smallest) > target * (1 + BAND), "raised though its smallest size fits"
        return
    assert m.count(b, smallest) <= target * (1 + BAND)
    assert sizing.target == target
    assert sizing.count <= target * (1 + BAND)
    assert sizing.count == m.count(b, sizing.size)
    assert sizing.reached == (abs(sizing.ratio - 1) <= BAND)

    if not sizing.reached:
        # a miss is real: no size lands within 1%, and the solver kept the closest one below
        fitting = list(admissible(m, b, target))
        assert not any(abs(c - target) <= target * BAND for _, c in fitting), (bb, target, name)
        assert sizing.count == max(c for _, c in fitting)

    if bb in REAL:
        reason = EXPECTED_MISSES.get((bb, target, name))
        assert sizing.reached == (reason is None), (
            f"{name} on {bb} at {target:,}: ratio {sizing.ratio:.4f}, "
            + ("an unexpected miss" if reason is None else f"listed as a miss ({reason}) but now lands"))
        if reason == "cap":
            assert sizing.size == largest_size(m, b)
        elif reason == "step":
            assert sizing.size != largest_size(m, b)
    elif target <= lora_max(b):
        assert sizing.reached, f"{name} on {bb} at {target:,}: ratio {sizing.ratio:.4f}"


def test_grid_covers_the_plus1_methods():
    assert {"lora", "dora", "adapter", "hora", "vera"} <= set(SIZED)
    for bb, target, name in EXPECTED_MISSES:  # a misspelt entry would silently never apply
        assert bb in REAL and target in BUDGETS and name in SIZED


def test_lora_r8_on_vit_b16_matches_the_literature_count():
    assert method("lora").count(backbone("vit-b16"), {"r": 8}) == 294_912
    assert method("lora").count(backbone("vit-b16"), {"r": 8, "plus1": 0}) == 294_912
    # one more rank on the first target (block 0's q: 768 -> 768) costs 768 + 768
    assert method("lora").count(backbone("vit-b16"), {"r": 8, "plus1": 1}) == 294_912 + 1536


@pytest.mark.parametrize("text,params", [("0.3M", 300_000), ("300k", 300_000), ("294912", 294_912),
                                         ("1.5m", 1_500_000)])
def test_parse_counts(text, params):
    assert parse_budget(text).params == params


def test_parse_reference():
    budget = parse_budget("lora:r=8")
    assert (budget.method, budget.size) == ("lora", {"r": 8})


@pytest.mark.parametrize("text", ["", "abc", "0.3X", "-5k", "0", "lora:r=", "lora:r=x", "lora r=8"])
def test_parse_rejects_garbage(text):
    with pytest.raises(UsageError):
        parse_budget(text)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("budget", ["lora:r=8", "lora:r=2", "20k"])
def test_solver_picks_the_preferred_closest_size(name, budget):
    b = backbone(name)
    registered = all_methods()
    target = budget_params(parse_budget(budget), b, registered)
    for m in registered.values():
        sizing = solve(m, b, target)
        if not m.knobs:
            assert sizing.size == {} and sizing.reached, m.name
            continue
        if (name, budget, m.name) == ("tiny-llama", "lora:r=2", "dora"):
            # 2,816 parameters: DoRA's magnitudes (640) leave r=1 plus widened modules, 2,752 or 2,880,
            # a step of 128 (4.5%) that no size spans within 1%
            assert not sizing.reached and sizing.count == 2_752, sizing
        else:
            assert sizing.reached, m.name
        if budget.startswith("lora:"):
            r = int(budget.rsplit("=", 1)[1])
            assert target == registered["lora"].count(b, {"r": r, "plus1": 0})
            if m.name == "lora":  # the reference itself, exactly
                assert (sizing.size, sizing.count) == ({"r": r, "plus1": 0}, target)
        fitting = list(admissible(m, b, target))
        band = [(m.preference(size), abs(c - target), c) for size, c in fitting if abs(c - target) <= target * BAND]
        if not sizing.reached:
            assert not band and sizing.count == max(c for _, c in fitting), m.name
            continue
        preferred = min(p for p, _, _ in band)
        assert m.preference(sizing.size) == preferred, m.name
        assert abs(sizing.count - target) == min(miss for p, miss, _ in band if p == preferred), m.name


def test_budget_too_small_is_a_usage_error():
    with pytest.raises(UsageError, match="too small"):
        solve(method("lora"), backbone("tiny-vit"), 10)


def _widths(model, name):
    """Width of every adapted module, in depth order (LoRA's rank, the adapter's bottleneck)."""
    if name in ("lora", "dora"):
        return [mod.lora_A["default"].weight.shape[0] for _, mod in model.named_modules() if hasattr(mod, "lora_A")]
    return [mod.bottleneck_down["default"].out_features for _, mod in model.named_modules()
            if hasattr(mod, "bottleneck_down")]


@pytest.mark.parametrize("name", ["lora", "dora", "adapter", "hora"])
@pytest.mark.parametrize("bb", ["tiny-vit", "tiny-llama"])
def test_second_knob_is_real(bb, name):
    from peftbench.methods.hora.layer import HoraGenerator

    b, m = backbone(bb), method(name)
    knob, default = ("hidden", 32) if name == "hora" else ("plus1", 0)
    for target in range(10_000, 30_001, 1_000):
        sizing = solve(m, b, target)
        if sizing.size[knob] != default:
            break
    else:
        pytest.fail(f"no budget in 10k..30k gives {name} a {knob} other than {default}")
    assert sizing.reached
    # the knob changes the count: it is not a label on an unchanged size
    assert m.count(b, {**sizing.size, knob: default}) != sizing.count

    model = m.apply(copy.deepcopy(b), sizing.size, dict(m.defaults))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == m.count(b, sizing.size) == sizing.count
    assert abs(trainable - target) <= target * BAND

    if name == "hora":
        generators = [mod for mod in model.modules() if isinstance(mod, HoraGenerator)]
        assert generators and all(g.g_A.w1.shape[-2] == sizing.size["hidden"] for g in generators)
    else:
        r, k = sizing.size["r"], sizing.size["plus1"]
        targets = m.targets(b, m.defaults) if name == "adapter" else b.target_modules
        widths = _widths(model, name)
        assert len(widths) == len(target_names(b.module, targets))
        assert widths == [r + 1] * k + [r] * (len(widths) - k)  # the first plus1 in depth order


def test_targets_change_the_count():
    b, lora = backbone("tiny-llama"), method("lora")
    qv = dataclasses.replace(b, targets=("q", "v"))
    assert b.target_roles == ("q", "k", "v", "up", "down")
    assert qv.target_modules == ["self_attn.q_proj", "self_attn.v_proj"]

    shapes = [(mod.in_features, mod.out_features) for name, mod in b.module.named_modules()
              if name.endswith(("self_attn.q_proj", "self_attn.v_proj"))]
    # 2 blocks of q (64 -> 64) and v (64 -> 2 kv heads x 16 = 32), in depth order
    assert shapes == [(64, 64), (64, 32)] * 2
    costs = [d_in + d_out for d_in, d_out in shapes]
    for size in ({"r": 1}, {"r": 4, "plus1": 0}, {"r": 4, "plus1": 3}):
        expected = size["r"] * sum(costs) + sum(costs[:size.get("plus1", 0)])
        assert lora.count(qv, size) == expected
        assert lora.count(qv, size) < lora.count(b, size)
    # the same solve lands on a larger rank when fewer modules share the budget
    assert solve(lora, qv, 20_000).size["r"] > solve(lora, b, 20_000).size["r"]


def test_reference_with_a_failing_count_is_a_usage_error():
    class Broken(Method):
        name = "broken"

        def count(self, backbone, size):
            raise RuntimeError("shape lookup exploded\nsecond line")

    with pytest.raises(UsageError, match=r"broken's count\(\) failed: RuntimeError: shape lookup exploded$"):
        budget_params(parse_budget("broken:r=4"), backbone("tiny-vit"), {"broken": Broken()})
