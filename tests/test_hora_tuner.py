"""HoRA as a peft tuner: identity at init, merging, saving/loading, closed-form counts, cross-head coupling.

Tiny random models only (no downloads): a timm ViT with fused qkv, Dinov2 (q_proj/v_proj), BERT (query/value)
and a Llama with grouped-query attention (4 query heads, 2 kv heads, q/k/v adapted).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import copy

import pytest
import timm
import torch
from peft import PeftModel, get_peft_model
from peft.utils import PeftType
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, Dinov2Config, Dinov2Model, LlamaConfig, LlamaModel

from peftbench.methods.hora import HoraConfig, HoraLayer, HoraModel, hora_parameter_count

torch.set_num_threads(1)


def _vit():
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, embed_dim=64, num_heads=4,
        num_classes=0,
    )
    return model, {"num_attention_heads": 4}, {"x": torch.randn(2, 3, 32, 32)}


def _dinov2():
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    return Dinov2Model(config), {"num_attention_heads": 4}, {"pixel_values": torch.randn(2, 3, 32, 32)}


def _bert():
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=16,
    )
    inputs = {"input_ids": torch.randint(0, 64, (2, 7))}
    return BertModel(config, add_pooling_layer=False), {"num_attention_heads": 4}, inputs


def _llama():
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=16,
    )
    heads = {"num_attention_heads": 4, "num_key_value_heads": 2, "targets": ["q", "k", "v"]}
    return LlamaModel(config), heads, {"input_ids": torch.randint(0, 64, (2, 7))}


ARCHS = {"vit": _vit, "dinov2": _dinov2, "bert": _bert, "llama": _llama}
VARIANTS = [
    {"share": share, "seeds": seeds, "axis": axis}
    for share in ("heads", "none", "qv")
    for seeds in ("shared", "separate")
    for axis in ("rank", "head_dim")
    if not (share == "qv" and seeds == "separate")  # invalid: qv shares seeds by definition
    and not (share == "none" and (seeds, axis) != ("shared", "rank"))  # MH-LoRA has no seeds nor generator
]
VARIANT_IDS = [f"{v['share']}-{v['seeds']}-{v['axis']}" for v in VARIANTS]


def build(arch, **overrides):
    """(base model, adapted copy, inputs); the base stays untouched."""
    torch.manual_seed(0)
    model, heads, inputs = ARCHS[arch]()
    model.eval()
    base = copy.deepcopy(model)
    return base, get_peft_model(model, HoraConfig(**heads, **overrides)), inputs


def run(model, inputs):
    out = model(**inputs)
    return out if torch.is_tensor(out) else out.last_hidden_state


def train(model, inputs, steps=3):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    probe = None  # a fixed random readout: a norm-like loss is flat after a final LayerNorm
    for _ in range(steps):
        out = run(model, inputs)
        if probe is None:
            probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        opt.zero_grad()
        (out * probe).mean().backward()
        opt.step()


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_identity_at_init_and_closed_form_count(arch, variant):
    base, model, inputs = build(arch, **variant)
    assert isinstance(model.base_model, HoraModel)
    with torch.no_grad():
        assert torch.equal(run(model, inputs), run(base, inputs))
    count = hora_parameter_count(model.peft_config["default"], base)
    assert count["total"] == trainable(model) > 0
    assert count["total"] == count["seeds"] + count["generator"] + count["heads"]
    assert hora_parameter_count(model.peft_config["default"], model) == count  # also on the wrapped model
    if variant["share"] == "none":  # MH-LoRA has exactly LoRA's count
        lora = sum(
            m.r["default"] * (m.in_features + stop - start)
            for m in model.modules() if isinstance(m, HoraLayer)
            for start, stop, _ in m.hora_layout["default"].values()
        )
        assert count["total"] == lora and count["generator"] == 0


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_train_then_merge(arch, variant):
    base, model, inputs = build(arch, **variant)
    train(model, inputs)
    with torch.no_grad():
        adapted = run(model, inputs)
        assert (adapted - run(base, inputs)).abs().max() > 1e-4  # training moved the model
        weights = {n: p.clone() for n, p in model.named_parameters() if "base_layer" in n}
        model.merge_adapter()
        torch.testing.assert_close(run(model, inputs), adapted, atol=1e-5, rtol=0)
        model.unmerge_adapter()
        for n, p in model.named_parameters():
            if n in weights:
                torch.testing.assert_close(p, weights[n], atol=1e-6, rtol=0)
        merged = model.merge_and_unload()
        assert not any(isinstance(m, HoraLayer) for m in merged.modules())
        assert not any("hora_" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(run(merged, inputs), adapted, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", [{}, {"seeds": "separate"}, {"share": "none"}], ids=["default", "sep", "none"])
@pytest.mark.parametrize("arch", ARCHS)
def test_save_and_load(arch, variant, tmp_path):
    base, model, inputs = build(arch, **variant)
    fresh = copy.deepcopy(base)
    train(model, inputs)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert saved and all("hora_" in k for k in saved)
    generators = model.base_model.hora_generators
    if variant.get("share") != "none":
        n_blocks = len(generators["default"])
        assert n_blocks == 2
        per_generator = len(dict(next(iter(generators["default"].values())).named_parameters()))
        assert sum(".hora_generators." in k for k in saved) == n_blocks * per_generator  # each saved once
    assert sum(v.numel() for v in saved.values()) == trainable(model)
    loaded = PeftModel.from_pretrained(fresh, tmp_path)
    with torch.no_grad():
        assert torch.equal(run(loaded, inputs), run(model, inputs))


def test_load_under_another_adapter_name(tmp_path):
    base, model, inputs = build("dinov2")
    train(model, inputs)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, adapter_name="other")
    assert "other" in loaded.base_model.hora_generators
    with torch.no_grad():
        assert torch.equal(run(loaded, inputs), run(model, inputs))


def test_separate_targets_share_one_generator():
    _, model, _ = build("dinov2")
    for layer in model.base_model.model.encoder.layer:
        q, v = layer.attention.q_proj, layer.attention.v_proj
        assert q.hora_generator["default"] is v.hora_generator["default"]
    assert len(model.base_model.hora_generators["default"]) == 2
    # the reference on the layers is not registered: the generator's parameters appear once, under the tuner
    assert not any("hora_generator." in n for n, _ in model.named_parameters())


def _head_rows(layer, head, d_h=16, r=8):
    """Block 0's generated B^Q rows of one head (fused qkv: Q rows come first, Q's rank columns first)."""
    return layer.hora_factors("default")[1][head * d_h : (head + 1) * d_h, :r]


def test_gradients_reach_every_head_through_the_generator():
    _, model, inputs = build("vit", init_weights=False)  # nonzero B-projections
    generator = model.base_model.hora_generators["default"]["blocks-0-attn"]
    run(model, inputs).square().mean().backward()
    assert (generator.B_seed.grad.flatten(1).abs().sum(1) > 0).all()  # every head's seed

    model.zero_grad()
    qkv = model.base_model.model.blocks[0].attn.qkv
    outputs = []
    hook = qkv.register_forward_hook(lambda mod, args, out: outputs.append(out))
    run(model, inputs)
    hook.remove()
    outputs[0][..., :16].square().sum().backward()  # a loss on head 0's query output only
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.g_B.parameters())
    per_head = generator.B_seed.grad.flatten(1).abs().sum(1)
    assert per_head[0] > 0 and (per_head[1:] == 0).all()  # the coupling runs through g_B, not the seeds


@pytest.mark.parametrize("share, coupled", [("heads", True), ("none", False)])
def test_one_head_loss_moves_other_heads_only_with_a_shared_generator(share, coupled):
    _, model, inputs = build("vit", share=share, init_weights=False)
    qkv = model.base_model.model.blocks[0].attn.qkv
    with torch.no_grad():
        before = _head_rows(qkv, head=1).clone()
    outputs = []
    hook = qkv.register_forward_hook(lambda mod, args, out: outputs.append(out))
    run(model, inputs)
    hook.remove()
    outputs[0][..., :16].square().sum().backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
        moved = (_head_rows(qkv, head=1) - before).abs().max() > 0
    assert moved == coupled


def test_key_rows_of_fused_qkv_stay_frozen():
    _, model, _ = build("vit", init_weights=False)
    qkv = model.base_model.model.blocks[0].attn.qkv
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        out, base_out = qkv(x), qkv.base_layer(x)
        assert torch.equal(out[..., 64:128], base_out[..., 64:128])  # K
        assert not torch.allclose(out[..., :64], base_out[..., :64])  # Q
        assert not torch.allclose(out[..., 128:], base_out[..., 128:])  # V
        weight = qkv.base_layer.weight.clone()
        qkv.merge()
        assert torch.equal(qkv.base_layer.weight[64:128], weight[64:128])


def test_gqa_kv_heads_use_their_query_group():
    _, model, _ = build("llama", init_weights=False)
    attn = model.base_model.model.layers[0].self_attn
    assert attn.q_proj.hora_layout["default"] == {"q": (0, 32, 4)}
    assert attn.v_proj.hora_layout["default"] == {"v": (0, 16, 2)}
    with torch.no_grad():
        A, B = attn.v_proj.hora_factors("default")
        generator = attn.q_proj.hora_generator["default"]
        codes = generator.code_B(generator.B_seed)  # (4 query heads, d_h, r)
        group_mean = codes.unflatten(0, (2, 2)).mean(1) @ attn.v_proj.hora_proj_B["default"]["v"].T
        torch.testing.assert_close(B, group_mean.flatten(0, 1))


def test_vit_small_count_against_lora():
    with torch.device("meta"):  # shapes only
        vit_s = timm.create_model("vit_small_patch14_dinov2", pretrained=False)
    hora = hora_parameter_count(HoraConfig(r=8, num_attention_heads=6), vit_s)
    lora = hora_parameter_count(HoraConfig(r=8, num_attention_heads=6, share="none"), vit_s)
    assert lora["total"] == 147_456  # LoRA r=8 on q and v of 12 blocks of width 384
    assert 80_000 < hora["total"] < 100_000  # the spec's "about 93k"
    assert hora == {"seeds": 36_864, "generator": 16_320, "heads": 36_864, "total": 90_048}


def test_second_adapter_and_generator_trainability():
    _, model, inputs = build("vit")
    model.add_adapter("other", HoraConfig(num_attention_heads=4))
    generators = model.base_model.hora_generators
    assert all(p.requires_grad for p in generators["default"].parameters())
    assert not any(p.requires_grad for p in generators["other"].parameters())
    model.set_adapter("other")
    assert not any(p.requires_grad for p in generators["default"].parameters())
    assert all(p.requires_grad for p in generators["other"].parameters())
    model.delete_adapter("default")
    assert "default" not in generators


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # num_attention_heads missing
        {"num_attention_heads": 4, "share": "all"},
        {"num_attention_heads": 4, "axis": "width"},
        {"num_attention_heads": 4, "seeds": "tied"},
        {"num_attention_heads": 4, "activation": "swish"},
        {"num_attention_heads": 4, "share": "qv", "seeds": "separate"},
        {"num_attention_heads": 4, "num_key_value_heads": 3},
        {"num_attention_heads": 4, "r": 0},
        {"num_attention_heads": 4, "targets": ["q", "o"]},
        {"num_attention_heads": 4, "role_names": {"qkv": "fused"}},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        HoraConfig(**kwargs)


def test_registered_with_peft_and_config_round_trip(tmp_path):
    config = HoraConfig(num_attention_heads=4, num_key_value_heads=2, share="qv", axis="head_dim")
    assert config.peft_type == PeftType.HORA
    config.save_pretrained(tmp_path)
    loaded = HoraConfig.from_pretrained(tmp_path)
    assert (loaded.share, loaded.axis, loaded.num_key_value_heads) == ("qv", "head_dim", 2)
    assert set(loaded.target_modules) == set(config.target_modules)


def test_unknown_role_is_rejected():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="'k' is not in"):
        get_peft_model(_llama()[0], HoraConfig(num_attention_heads=4, num_key_value_heads=2, target_modules=["k_proj"]))
    with pytest.raises(ValueError, match="attention projections only"):
        get_peft_model(_llama()[0], HoraConfig(num_attention_heads=4, num_key_value_heads=2, target_modules=["o_proj"]))


@pytest.mark.parametrize("autocast", [True, False])
def test_half_precision_base(autocast):
    torch.manual_seed(0)
    model, heads, inputs = _llama()
    model = get_peft_model(model.to(torch.bfloat16), HoraConfig(**heads), autocast_adapter_dtype=autocast)
    dtype = torch.float32 if autocast else torch.bfloat16  # generators follow peft's rule for adapter weights
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {dtype}
    run(model, inputs).float().mean().backward()
    assert model.merge_and_unload().layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("arch", ["llama", "dinov2", "vit"])
def test_generator_runs_once_per_forward_and_block(arch):
    """Separate q/k/v Linears share one generator run per pass; gradients match a run per target."""
    _, model, inputs = build(arch, init_weights=False)
    calls = []
    generators = [g for gens in model.base_model.hora_generators.values() for g in gens.values()]
    for g in generators:
        g.g_A.register_forward_hook(lambda *_: calls.append(1))
    out = run(model, inputs)  # PeftModel.forward: one generation per block
    assert len(calls) == len(generators)
    (out ** 2).mean().backward()
    cached = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    calls.clear()
    per_target = run(model.base_model.model, inputs)  # bypasses the tuner: one generation per target
    assert len(calls) == sum(isinstance(m, HoraLayer) for m in model.modules())
    torch.testing.assert_close(per_target, out)
    (per_target ** 2).mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, cached[name], atol=1e-6, rtol=1e-5)
