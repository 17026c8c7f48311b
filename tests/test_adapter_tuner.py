"""Bottleneck adapters as a peft tuner, on tiny random timm ViT, Dinov2 and Llama models."""

import json
import re

import pytest
import torch
from conftest import tiny_timm_vit
from peft import PeftModel, get_peft_model
from transformers import Dinov2Config, Dinov2Model, LlamaConfig, LlamaModel

from peftbench.methods.adapter import (
    BottleneckConfig,
    BottleneckLayer,
    bottleneck_parameter_count,
    bottleneck_targets,
)

DEPTH = 2  # blocks of every tiny model (tiny_timm_vit has 2 too)


def _vit():
    return tiny_timm_vit()


def _dinov2():
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=DEPTH, num_attention_heads=4, intermediate_size=64,
                       image_size=32, patch_size=8)
    return Dinov2Model(cfg)


def _llama():
    cfg = LlamaConfig(hidden_size=32, num_hidden_layers=DEPTH, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, vocab_size=100)
    return LlamaModel(cfg)


# name -> (builder, attention output projection, MLP output projection, example input)
ARCHS = {
    "timm_vit": (_vit, "attn.proj", "mlp.fc2", lambda: torch.randn(2, 3, 32, 32)),
    "dinov2": (_dinov2, "attention.o_proj", "mlp.fc2", lambda: {"pixel_values": torch.randn(2, 3, 32, 32)}),
    "llama": (_llama, "self_attn.o_proj", "mlp.down_proj", lambda: {"input_ids": torch.randint(0, 100, (2, 8))}),
}


def base_model(arch):
    """The same random base model on every call, in eval mode (no dropout)."""
    torch.manual_seed(0)
    return ARCHS[arch][0]().eval()


def example_input(arch):
    torch.manual_seed(1)
    return ARCHS[arch][3]()


def config(arch, style="houlsby", **kwargs):
    _, attn_out, mlp_down, _ = ARCHS[arch]
    return BottleneckConfig(style=style, target_modules=bottleneck_targets(style, attn_out, mlp_down), **kwargs)


def forward(model, inp):
    out = model(**inp) if isinstance(inp, dict) else model(inp)
    return out if torch.is_tensor(out) else out.last_hidden_state


def train(model, inp, steps=3):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        forward(model, inp).pow(2).mean().backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_identity_at_init_then_training_moves_only_the_adapter(arch):
    inp = example_input(arch)
    with torch.no_grad():
        ref = forward(base_model(arch), inp)
    model = get_peft_model(base_model(arch), config(arch))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    with torch.no_grad():
        assert torch.equal(forward(model, inp), ref)  # zero up-projection: exactly the base model

    train(model, inp)
    with torch.no_grad():
        assert not torch.allclose(forward(model, inp), ref, atol=1e-4)
        with model.disable_adapter():
            assert torch.allclose(forward(model, inp), ref, atol=1e-6)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


@pytest.mark.parametrize("style", ["houlsby", "pfeiffer"])
@pytest.mark.parametrize("arch", ARCHS)
def test_only_adapters_trainable_and_closed_form_count(arch, style):
    cfg = config(arch, style, r=4)
    expected = bottleneck_parameter_count(cfg, base_model(arch))
    model = get_peft_model(base_model(arch), cfg)

    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("bottleneck_" in n for n in trainable)
    assert expected == sum(trainable.values())
    assert bottleneck_parameter_count(cfg, model) == expected  # also on the injected model
    wrapped = [m for m in model.modules() if isinstance(m, BottleneckLayer)]
    assert len(wrapped) == DEPTH * (2 if style == "houlsby" else 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_and_load_round_trip(arch, tmp_path):
    inp = example_input(arch)
    model = get_peft_model(base_model(arch), config(arch, activation="gelu"))
    train(model, inp, steps=2)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()

    from safetensors.torch import load_file

    keys = load_file(tmp_path / "adapter_model.safetensors").keys()
    assert keys and all("bottleneck_" in k for k in keys)

    loaded = PeftModel.from_pretrained(base_model(arch), tmp_path).eval()
    assert loaded.peft_config["default"].activation == "gelu"
    with torch.no_grad():
        out, ref = forward(model, inp), forward(base_model(arch), inp)
        assert not torch.allclose(out, ref, atol=1e-4)  # trained weights, so the load below means something
        assert torch.equal(forward(loaded, inp), out)


def _widths(model):
    """Module name in the base model -> (down weight shape, up weight shape, recorded width) of the default adapter."""
    if isinstance(model, PeftModel):
        model = model.base_model.model
    return {n: (tuple(m.bottleneck_down["default"].weight.shape), tuple(m.bottleneck_up["default"].weight.shape),
                m.bottleneck_r["default"]) for n, m in model.named_modules() if isinstance(m, BottleneckLayer)}


@pytest.mark.parametrize("arch", ARCHS)
def test_rank_pattern_widths_count_and_round_trip(arch, tmp_path):
    _, attn_out, mlp_down, _ = ARCHS[arch]
    r = 3
    outs = {n: m.out_features for n, m in base_model(arch).named_modules()
            if isinstance(m, torch.nn.Linear) and n.endswith((attn_out, mlp_down))}
    assert len(outs) == 2 * DEPTH
    # the first attention output by its full name, the last MLP output by an anchored regex
    wide_attn, wide_mlp = [n for n in outs if n.endswith(attn_out)][0], [n for n in outs if n.endswith(mlp_down)][-1]
    pattern = {wide_attn: r + 1, "^" + re.escape(wide_mlp): r + 1}
    width = {n: r + 1 if n in (wide_attn, wide_mlp) else r for n in outs}
    expected = sum(2 * d * width[n] + width[n] + d for n, d in outs.items())

    inp = example_input(arch)
    cfg = config(arch, r=r, rank_pattern=pattern)
    assert bottleneck_parameter_count(cfg, base_model(arch)) == expected
    model = get_peft_model(base_model(arch), cfg)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert bottleneck_parameter_count(cfg, model) == expected  # anchored regex still matches under the PeftModel
    assert _widths(model) == {n: ((w, outs[n]), (outs[n], w), w) for n, w in width.items()}
    with torch.no_grad():
        assert torch.equal(forward(model, inp), forward(base_model(arch), inp))

    train(model, inp, steps=2)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["rank_pattern"] == pattern
    loaded = PeftModel.from_pretrained(base_model(arch), tmp_path).eval()
    assert loaded.peft_config["default"].rank_pattern == pattern
    assert _widths(loaded) == _widths(model)
    with torch.no_grad():
        out = forward(model, inp)
        assert not torch.allclose(out, forward(base_model(arch), inp), atol=1e-4)  # trained, so the load is tested
        assert torch.equal(forward(loaded, inp), out)


def test_rank_pattern_matching_and_validation():
    cfg = BottleneckConfig(target_modules=["attn.proj", "mlp.fc2"], r=8, rank_pattern={
        "blocks.0.attn.proj": 5, r"^blocks\.1\.mlp\.fc2": 6, "mlp.fc2": 7})
    # as LoRA's rank_pattern: a full name or a dot-bounded suffix, regexes allowed, the first matching key wins
    assert [cfg.width(n) for n in ("blocks.0.attn.proj", "blocks.1.attn.proj", "blocks.1.mlp.fc2",
                                   "blocks.0.mlp.fc2", "model.blocks.1.mlp.fc2", "blocks.10.attn.proj")] == [
        5, 8, 6, 7, 7, 8]
    for bad in (0, -1, 2.0, True, "4", None):
        with pytest.raises(ValueError, match="rank_pattern"):
            BottleneckConfig(target_modules=["mlp.fc2"], rank_pattern={"mlp.fc2": bad})
    with pytest.raises(ValueError, match="rank_pattern"):
        BottleneckConfig(target_modules=["mlp.fc2"], rank_pattern={"mlp.fc2(": 4})


@pytest.mark.parametrize("arch", ARCHS)
def test_merge_refused_but_unload_returns_base(arch):
    inp = example_input(arch)
    model = get_peft_model(base_model(arch), config(arch, init="random"))
    with pytest.raises(ValueError, match="non-linear"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match="non-linear"):
        model.merge_adapter()
    with torch.no_grad():
        assert not torch.allclose(forward(model, inp), forward(base_model(arch), inp), atol=1e-4)

    unloaded = model.unload()
    assert not any(isinstance(m, BottleneckLayer) for m in unloaded.modules())
    ref = base_model(arch)
    assert unloaded.state_dict().keys() == ref.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(forward(unloaded, inp), forward(ref, inp))


def test_targets_and_validation():
    assert bottleneck_targets("houlsby", "attn.proj", "mlp.fc2") == ["attn.proj", "mlp.fc2"]
    assert bottleneck_targets("pfeiffer", "attn.proj", "mlp.fc2") == ["mlp.fc2"]
    with pytest.raises(ValueError):
        bottleneck_targets("parallel", "attn.proj", "mlp.fc2")
    for bad in ({"r": 0}, {"style": "lora"}, {"activation": "softmax"}, {"init": "ones"}, {"dropout": 1.0}):
        with pytest.raises(ValueError):
            BottleneckConfig(target_modules=["mlp.fc2"], **bad)
    cfg = BottleneckConfig(target_modules=["mlp.fc2"])
    assert (cfg.r, cfg.rank_pattern, cfg.style, cfg.activation, cfg.scaling, cfg.dropout, cfg.init) == (
        8, {}, "houlsby", "relu", 1.0, 0.0, "zero_up")
    with pytest.raises(ValueError, match="target_modules"):
        get_peft_model(base_model("timm_vit"), BottleneckConfig())
