"""Every registered method on tiny random backbones: counts, identity at init, frozen base."""

import copy

import pytest
import torch
from conftest import tiny_timm_vit

from peftbench.backbones import load_backbone
from peftbench.backbones.encoders import SplitQKV
from peftbench.registry import methods

BACKBONES = ["tiny-vit", "tiny-dinov2", "tiny-llama"]
#: the hand-written methods (a family's members, every peft tuner, face tests/test_tuner_battery.py)
METHODS = sorted(name for name in methods().loaded if name not in methods().from_family)


def inputs(backbone):
    torch.manual_seed(0)
    if backbone.modality == "image":
        return (torch.randn(2, 3, backbone.image_size, backbone.image_size),)
    return (torch.randint(0, 128, (2, 7)),)


def outputs(module, x):
    out = module(*x)
    return out.logits if hasattr(out, "logits") else out


@pytest.fixture(scope="module", params=BACKBONES)
def backbone(request):
    return load_backbone(request.param)


@pytest.mark.parametrize("name", METHODS)
def test_closed_form_count_equals_the_trainable_parameters(backbone, name):
    method = methods().loaded[name]()
    size = {"r": 4} if method.knobs else {}
    adapted = method.apply(copy.deepcopy(backbone), size, method.defaults)
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    assert trainable == method.count(backbone, size)


@pytest.mark.parametrize("name", [m for m in METHODS if m != "full"])
def test_adapted_model_equals_the_base_at_init_and_base_weights_stay_frozen(backbone, name):
    method = methods().loaded[name]()
    local = copy.deepcopy(backbone)
    x = inputs(backbone)
    with torch.no_grad():
        expected = outputs(local.module, x)
    adapted = method.apply(local, {"r": 4} if method.knobs else {}, method.defaults)
    with torch.no_grad():
        torch.testing.assert_close(outputs(adapted, x), expected, atol=1e-5, rtol=1e-5)
    base_names = {n for n, _ in backbone.module.named_parameters()}
    for n, p in adapted.named_parameters():
        base_name = n.removeprefix("base_model.model.").replace(".base_layer", "")
        if base_name in base_names:
            assert not p.requires_grad, n


def test_split_qkv_reproduces_the_fused_projection():
    torch.manual_seed(0)
    fused = torch.nn.Linear(16, 48)
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(SplitQKV(fused)(x), fused(x))


def test_timm_backbone_matches_the_unsplit_model():
    torch.manual_seed(0)
    backbone = load_backbone("tiny-vit")
    original = tiny_timm_vit().eval()  # the same timm ViT, its qkv fused
    state = {k.replace(".qkv.q.", ".qkv.").replace(".qkv.k.", ".qkv.").replace(".qkv.v.", ".qkv."): v
             for k, v in backbone.module.model.state_dict().items()}
    fused = {}
    for key in original.state_dict():
        if ".qkv." in key:
            prefix = key.rsplit(".qkv.", 1)[0]
            leaf = key.rsplit(".", 1)[1]
            parts = [backbone.module.model.state_dict()[f"{prefix}.qkv.{p}.{leaf}"] for p in "qkv"]
            fused[key] = torch.cat(parts)
        else:
            fused[key] = state[key]
    original.load_state_dict(fused)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone.module(x), original(x))


@pytest.mark.parametrize("name", ["lora", "dora", "vera"])
def test_k_stays_frozen_on_timm_vit(name):
    backbone = load_backbone("tiny-vit")
    method = methods().loaded[name]()
    adapted = method.apply(backbone, {"r": 4}, method.defaults)
    adapted_layers = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert adapted_layers and not any(".qkv.k." in n for n in adapted_layers)
    assert any(".qkv.q." in n for n in adapted_layers) and any(".qkv.v." in n for n in adapted_layers)


@pytest.mark.parametrize("name", ["lora", "dora", "vera", "hora"])
def test_every_method_adapts_the_recipes_targets(name):
    """q, k, v, up and down on a Llama by default; HoRA gives the MLP plain LoRA of its rank."""
    from dataclasses import replace

    method = methods().loaded[name]()
    llama = load_backbone("tiny-llama")
    everything = {"q_proj", "k_proj", "v_proj", "up_proj", "down_proj"}
    for targets, suffixes in ((None, everything), (("q", "v"), {"q_proj", "v_proj"})):
        backbone = replace(llama, targets=targets or ())
        adapted = method.apply(copy.deepcopy(backbone), {"r": 4}, method.defaults)
        wrapped = {n.rsplit(".", 1)[-1] for n, m in adapted.named_modules() if hasattr(m, "base_layer")}
        assert wrapped == suffixes, (name, targets)
        assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == method.count(backbone, {"r": 4})
