"""HoRA as a peft tuner: identity at init, merging, saving/loading, closed-form counts, cross-head coupling.

Tiny random models only (no downloads): a timm ViT with fused qkv, Dinov2 (q_proj/v_proj), BERT (query/value)
and a Llama with grouped-query attention (4 query heads, 2 kv heads, q/k/v adapted); a Llama causal LM also takes
plain LoRA on its MLP up/down projections (`lora_modules`).
"""

import copy

import pytest
import timm
import torch
from conftest import tiny_timm_vit
from peft import PeftModel, get_peft_model
from peft.utils import PeftType
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM, LlamaModel
from torch.utils._python_dispatch import TorchDispatchMode

from peftbench.methods.hora import HoraConfig, HoraLayer, HoraModel, hora_parameter_count


def _vit():
    return tiny_timm_vit(), {"num_attention_heads": 4}, {"x": torch.randn(2, 3, 32, 32)}


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
] + [  # P_B on g_B's head_dim axis (d_h x d_h) instead of the rank axis
    {"share": share, "seeds": "shared", "axis": "head_dim", "proj_axis": "generator"} for share in ("heads", "qv")
]
VARIANT_IDS = [f"{v['share']}-{v['seeds']}-{v['axis']}" + ("-genproj" if "proj_axis" in v else "") for v in VARIANTS]


def build(arch, **overrides):
    """(base model, adapted copy, inputs); the base stays untouched."""
    torch.manual_seed(0)
    model, heads, inputs = ARCHS[arch]()
    model.eval()
    base = copy.deepcopy(model)
    return base, get_peft_model(model, HoraConfig(**heads, **overrides)), inputs


def run(model, inputs):
    out = model(**inputs)
    if torch.is_tensor(out):
        return out
    return out.logits if "logits" in out else out.last_hidden_state


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


#: what a trainable HoRA parameter is, by a component of its name (seeds and heads: MH-LoRA's free A and B too)
PARTS = {"A_seed": "seeds", "hora_A": "seeds", "B_seed": "heads", "hora_B": "heads",
         "g_A": "generator", "g_B": "generator", "hora_proj_A": "generator", "hora_proj_B": "generator"}


def trainable_by_part(model):
    """The trainable parameters counted from the tensors themselves, grouped by what their names say they are."""
    parts = dict.fromkeys(("seeds", "heads", "generator"), 0)
    for name, p in model.named_parameters():
        if p.requires_grad:
            (part,) = {PARTS[c] for c in name.split(".") if c in PARTS}  # one kind each, or the unpacking fails
            parts[part] += p.numel()
    return parts


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_identity_at_init_and_closed_form_count(arch, variant):
    base, model, inputs = build(arch, **variant)
    assert isinstance(model.base_model, HoraModel)
    with torch.no_grad():
        assert torch.equal(run(model, inputs), run(base, inputs))
    count = hora_parameter_count(model.peft_config["default"], base)
    assert count["total"] == trainable(model) > 0
    assert {k: count[k] for k in ("seeds", "heads", "generator", "lora")} == {**trainable_by_part(model), "lora": 0}
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
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in merged.modules())  # the blocks' pass hooks
        torch.testing.assert_close(run(merged, inputs), adapted, atol=1e-5, rtol=0)


#: tiny enough that CPU bmm takes its scalar kernel, which rounds unlike mm: a kernel switch shows in the outputs
SMALL = {"r": 2, "hidden": 4}


@pytest.mark.parametrize("size", [{}, SMALL], ids=["r8", "r2"])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("arch", ARCHS)
def test_save_and_load(arch, variant, size, tmp_path):
    """A reloaded adapter, frozen (the default) or trainable, reproduces the saved model's outputs bit for bit."""
    base, model, inputs = build(arch, **variant, **size)
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
    with torch.no_grad():
        expected = run(model, inputs)
    assert torch.equal(run(model, inputs).detach(), expected)  # with grad enabled too
    for is_trainable in (False, True):
        loaded = PeftModel.from_pretrained(copy.deepcopy(fresh), tmp_path, is_trainable=is_trainable)
        assert (trainable(loaded) > 0) == is_trainable
        with torch.no_grad():
            assert torch.equal(run(loaded, inputs), expected), f"{is_trainable=}"


class MatmulTrace(TorchDispatchMode):
    """Records the matmul kernels a forward pass runs, with their operand shapes."""

    KERNELS = {"mm", "bmm", "addmm", "baddbmm", "mv", "addmv", "dot"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.KERNELS:
            self.calls.append((name, tuple(tuple(a.shape) for a in args if torch.is_tensor(a))))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("arch", ["vit", "llama"])
def test_kernels_do_not_depend_on_requires_grad(arch, variant, tmp_path):
    """torch.matmul picks mm or bmm by whether an operand requires grad (head_dim axis: g_B(seed.mT)); the
    adapter must run the same kernels trained, frozen after reloading, and with grad on or off, whatever the BLAS."""
    base, model, inputs = build(arch, **variant)
    train(model, inputs, steps=1)
    model.save_pretrained(tmp_path)
    frozen = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)

    def kernels(m, grad):
        with torch.set_grad_enabled(grad), MatmulTrace() as trace:
            run(m, inputs)
        return trace.calls

    reference = kernels(model, grad=False)
    assert any(name in ("bmm", "mm") for name, _ in reference)
    assert kernels(model, grad=True) == reference
    assert kernels(frozen, grad=False) == reference


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


@pytest.mark.parametrize("share, coupled", [("heads", True), ("qv", False), ("none", False)])
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


def _head_zero_loss(arch, share):
    """Backward of a loss on head 0's Q and V output rows of block 0 only; returns (model, block-0 generator)."""
    _, model, inputs = build(arch, share=share, init_weights=False)  # nonzero P_B: gradients reach g_B
    if arch == "vit":  # fused qkv, d_h = 16: Q rows [0, 64), V rows [128, 192)
        modules, rows = [model.base_model.model.blocks[0].attn.qkv], [slice(0, 16), slice(128, 144)]
        generator = model.base_model.hora_generators["default"]["blocks-0-attn"]
    else:  # dinov2: q_proj and v_proj, d_h = 8
        attention = model.base_model.model.encoder.layer[0].attention
        modules, rows = [attention.q_proj, attention.v_proj], [slice(0, 8)]
        generator = attention.q_proj.hora_generator["default"]
    outputs = []
    hooks = [m.register_forward_hook(lambda mod, args, out: outputs.append(out)) for m in modules]
    run(model, inputs)
    for hook in hooks:
        hook.remove()
    sum(out[..., r].square().sum() for out in outputs for r in rows).backward()
    return model, modules, generator


@pytest.mark.parametrize("share", ["heads", "qv"])
@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_qv_heads_share_nothing_on_the_b_side(arch, share):
    """share="qv": a loss on head 0 gives no gradient to any B-side parameter of another head (B seeds, g_B,
    P_B); share="heads": the shared g_B and P_B, which every head uses, do get it."""
    model, modules, generator = _head_zero_loss(arch, share)
    b_side = {f"g_B.{n}": p for n, p in generator.g_B.named_parameters()}
    b_side["B_seed"] = generator.B_seed
    for i, m in enumerate(modules):
        b_side.update({f"{i}.P_B.{role}": p for role, p in m.hora_proj_B["default"].items()})
    own, others = {}, {}  # parameter -> |grad| summed over head 0's part, and over the other heads' parts
    for name, p in b_side.items():
        grad = p.grad.abs() if p.grad is not None else torch.zeros_like(p)
        if p.dim() == 3:  # one slice per head, head axis first
            assert p.shape[0] == 4, name
            own[name], others[name] = grad[0].sum(), grad[1:].sum()
        else:  # shared by every head: it belongs to head 0 and to the others alike
            own[name] = others[name] = grad.sum()
    assert all(v > 0 for v in own.values()), own  # the loss reaches every B-side part of head 0
    leaks = sorted(name for name, v in others.items() if v > 0)
    if share == "qv":
        assert leaks == []
    else:  # every shared part leaks into the other heads; the per-head seeds never do
        assert leaks == sorted(name for name in b_side if name != "B_seed")


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


@pytest.mark.parametrize("share", ["heads", "qv"])
@pytest.mark.parametrize("proj_axis", ["rank", "generator"])
def test_b_projection_axis(proj_axis, share):
    """B^V_i = P_B^V g_B(B_seed_i) with g_B on the head_dim axis; P_B is r x r on the rank axis (right factor) or
    d_h x d_h on g_B's head_dim axis (left factor), per head under share="qv"."""
    _, model, _ = build("vit", axis="head_dim", proj_axis=proj_axis, share=share, init_weights=False)
    qkv = model.base_model.model.blocks[0].attn.qkv
    generator = qkv.hora_generator["default"]
    P = qkv.hora_proj_B["default"]["v"]
    size = 16 if proj_axis == "generator" else 8  # d_h or r
    assert P.shape == ((4, size, size) if share == "qv" else (size, size))
    with torch.no_grad():
        codes = generator.code_B(generator.B_seed)  # (4 heads, d_h, r)
        per_head = P if share == "qv" else P.expand(4, size, size)
        expected = torch.stack(
            [per_head[i] @ codes[i] if proj_axis == "generator" else codes[i] @ per_head[i].T for i in range(4)]
        )
        B = qkv.hora_factors("default")[1]
        torch.testing.assert_close(B[128:192, 8:16], expected.flatten(0, 1), atol=1e-6, rtol=1e-6)  # V rows
    # with axis="rank", g_B's axis is the rank axis: "generator" is the same model as "rank"
    counts = [hora_parameter_count(HoraConfig(num_attention_heads=4, proj_axis=a, share=share), build("vit")[0])
              for a in ("rank", "generator")]
    assert counts[0] == counts[1]


def test_vit_small_count_against_lora():
    with torch.device("meta"):  # shapes only
        vit_s = timm.create_model("vit_small_patch14_dinov2", pretrained=False)
    hora = hora_parameter_count(HoraConfig(r=8, num_attention_heads=6), vit_s)
    lora = hora_parameter_count(HoraConfig(r=8, num_attention_heads=6, share="none"), vit_s)
    assert lora["total"] == 147_456  # LoRA r=8 on q and v of 12 blocks of width 384
    assert 80_000 < hora["total"] < 100_000  # the spec's "about 93k"
    assert hora == {"seeds": 36_864, "generator": 16_320, "heads": 36_864, "lora": 0, "total": 90_048}
    # share="qv": per block g_A, one g_B per head (6 mlp(8) of 552), P_A for q and v, one P_B per head and target
    qv = hora_parameter_count(HoraConfig(r=8, num_attention_heads=6, share="qv"), vit_s)
    assert qv["generator"] == 12 * (552 + 6 * 552 + 2 * 64 + 2 * 6 * 64) == 57_120
    # axis="head_dim": g_B maps R^64 (mlp(64) = 4192); P_B is 8 x 8, or 64 x 64 on g_B's axis (proj_axis)
    head_dim = hora_parameter_count(HoraConfig(r=8, num_attention_heads=6, axis="head_dim"), vit_s)
    assert head_dim["generator"] == 12 * (552 + 4192 + 2 * 64 + 2 * 64)
    wide = hora_parameter_count(HoraConfig(r=8, num_attention_heads=6, axis="head_dim", proj_axis="generator"), vit_s)
    assert wide["generator"] == 12 * (552 + 4192 + 2 * 64 + 2 * 64 * 64)


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
        {"num_attention_heads": 4, "proj_axis": "head_dim"},
        {"num_attention_heads": 4, "activation": "swish"},
        {"num_attention_heads": 4, "share": "qv", "seeds": "separate"},
        {"num_attention_heads": 4, "num_key_value_heads": 3},
        {"num_attention_heads": 4, "r": 0},
        {"num_attention_heads": 4, "targets": ["q", "o"]},
        {"num_attention_heads": 4, "role_names": {"qkv": "fused"}},
        {"num_attention_heads": 4, "lora_modules": "up_proj"},  # a string, not a list of names
        {"num_attention_heads": 4, "lora_modules": [1]},
        {"num_attention_heads": 4, "lora_modules": ["mlp.up_proj"]},  # a path, not a last name component
        {"num_attention_heads": 4, "lora_modules": ["up_proj", "q_proj"]},  # q_proj is an attention role
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        HoraConfig(**kwargs)


def test_registered_with_peft_and_config_round_trip(tmp_path):
    config = HoraConfig(
        num_attention_heads=4, num_key_value_heads=2, share="qv", axis="head_dim", proj_axis="generator"
    )
    assert config.peft_type == PeftType.HORA
    config.save_pretrained(tmp_path)
    loaded = HoraConfig.from_pretrained(tmp_path)
    assert (loaded.share, loaded.axis, loaded.proj_axis) == ("qv", "head_dim", "generator")
    assert loaded.num_key_value_heads == 2
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
    calls.clear()
    run(model.base_model.model, inputs)  # the pass is the block's: so also without the tuner's forward
    assert len(calls) == len(generators)
    (out ** 2).mean().backward()
    cached = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    calls.clear()
    model.base_model._remove_pass_hooks(list(model.base_model._pass_hooks))
    per_target = run(model, inputs)  # no pass open: one generation per target
    assert len(calls) == sum(isinstance(m, HoraLayer) for m in model.modules())
    torch.testing.assert_close(per_target, out)
    (per_target ** 2).mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, cached[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "dinov2"])
def test_a_forward_interrupted_inside_a_block_leaves_no_stale_codes(arch):
    _, model, inputs = build(arch)
    first = next(m for m in model.modules() if isinstance(m, HoraLayer))
    handle = first.register_forward_hook(lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run(model, inputs)
    handle.remove()
    train(model, inputs, steps=2)  # codes from the interrupted pass would be backpropagated twice


def test_deleting_an_inactive_adapter_leaves_the_active_ones_generators_as_they_were():
    _, model, inputs = build("llama")
    model.add_adapter("other", copy.deepcopy(model.peft_config["default"]))
    model.base_model.set_adapter("default", inference_mode=True)  # active, frozen
    model.delete_adapter("other")
    assert trainable(model) == 0


# --- plain LoRA on the MLP projections (lora_modules) of a Llama causal LM ---

MLP_LORA = ["up_proj", "down_proj"]


def build_lm(**overrides):
    """(base, adapted copy, inputs): a tiny Llama LM, HoRA on q, k, v and plain LoRA on up/down unless overridden."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=16,
    )
    model = LlamaForCausalLM(config).eval()
    base = copy.deepcopy(model)
    options = {"num_attention_heads": 4, "num_key_value_heads": 2, "targets": ["q", "k", "v"], "lora_modules": MLP_LORA}
    hora = HoraConfig(**{**options, **overrides})
    return base, get_peft_model(model, hora), {"input_ids": torch.randint(0, 64, (2, 7))}


def mlp_lora_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, HoraLayer) and n.rsplit(".", 1)[-1] in MLP_LORA}


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_mlp_lora_identity_at_init_and_closed_form_count(variant):
    base, model, inputs = build_lm(**variant)
    layers = mlp_lora_layers(model)
    assert sorted(n.split("layers.", 1)[1] for n in layers) == [
        "0.mlp.down_proj", "0.mlp.up_proj", "1.mlp.down_proj", "1.mlp.up_proj"
    ]
    assert not isinstance(model.base_model.model.model.layers[0].mlp.gate_proj, HoraLayer)
    for layer in layers.values():
        assert layer.hora_layout["default"] == {"lora": (0, layer.out_features, 1)}
        assert not layer.hora_generator and "default" not in layer.hora_proj_B  # no generator, no projections
        assert not layer.hora_B["default"]["lora"].any()  # zero B: identity at init
    if variant["share"] != "none":  # only the attention blocks have generators
        assert sorted(model.base_model.hora_generators["default"]) == [
            "model-layers-0-self_attn", "model-layers-1-self_attn"
        ]
    with torch.no_grad():
        assert torch.equal(run(model, inputs), run(base, inputs))

    config = model.peft_config["default"]
    count = hora_parameter_count(config, base)
    assert count["total"] == trainable(model) > 0
    assert hora_parameter_count(config, model) == count  # also on the wrapped model
    # plain LoRA's r (d_in + d_out), here from the base weights' shapes: up 64 -> 128, down 128 -> 64, two layers
    expected = sum(
        config.r * sum(m.weight.shape) for n, m in base.named_modules() if n.endswith(("mlp.up_proj", "mlp.down_proj"))
    )
    assert count["lora"] == expected == 4 * 8 * (64 + 128)
    mlp_trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and ".mlp." in n)
    assert mlp_trainable == expected
    # the attention part is untouched by lora_modules
    attention_only = hora_parameter_count(HoraConfig(**{**variant, **_llama()[1]}), base)
    assert {k: v for k, v in count.items() if k not in ("lora", "total")} == {
        k: v for k, v in attention_only.items() if k not in ("lora", "total")
    }
    assert count["total"] - attention_only["total"] == expected


@pytest.mark.parametrize("names, d_in, d_out", [(["up_proj"], 64, 128), (["down_proj"], 128, 64)])
def test_mlp_lora_count_of_one_projection(names, d_in, d_out):
    """One projection at a time: up and down together would hide a count that confuses d_in and d_out."""
    base, model, _ = build_lm(lora_modules=names, share="none")
    count = hora_parameter_count(model.peft_config["default"], base)
    assert count["lora"] == 2 * 8 * (d_in + d_out)  # two layers, r = 8
    assert count["total"] == trainable(model)


@pytest.mark.parametrize(
    "variant", [{}, {"share": "none"}, {"seeds": "separate"}, {"init_weights": False}],
    ids=["default", "none", "sep", "random-init"],
)
def test_mlp_lora_train_then_merge(variant):
    base, model, inputs = build_lm(**variant)
    if variant.get("init_weights") is False:
        with torch.no_grad():
            assert (run(model, inputs) - run(base, inputs)).abs().max() > 1e-4  # random B: not the identity
    before = {n: m.hora_A["default"]["lora"].detach().clone() for n, m in mlp_lora_layers(model).items()}
    train(model, inputs)
    for name, layer in mlp_lora_layers(model).items():  # training moved the MLP factors
        assert not torch.equal(layer.hora_A["default"]["lora"], before[name])
        assert layer.hora_B["default"]["lora"].abs().max() > 0
    with torch.no_grad():
        adapted = run(model, inputs)
        assert (adapted - run(base, inputs)).abs().max() > 1e-4
        up = model.base_model.model.model.layers[0].mlp.up_proj
        x = torch.randn(3, 64)
        delta = up(x) - up.base_layer(x)
        weight = up.base_layer.weight.clone()
        model.merge_adapter()
        torch.testing.assert_close(up.base_layer.weight - weight, up.get_delta_weight("default"))
        torch.testing.assert_close(x @ (up.base_layer.weight - weight).T, delta, atol=1e-5, rtol=0)
        torch.testing.assert_close(run(model, inputs), adapted, atol=1e-5, rtol=0)
        model.unmerge_adapter()
        torch.testing.assert_close(up.base_layer.weight, weight, atol=1e-6, rtol=0)
        torch.testing.assert_close(run(model, inputs), adapted, atol=1e-5, rtol=0)
        merged = model.merge_and_unload()
        assert not any(isinstance(m, HoraLayer) for m in merged.modules())
        torch.testing.assert_close(run(merged, inputs), adapted, atol=1e-5, rtol=0)


def test_mlp_lora_is_plain_lora():
    """The update of a lora_modules Linear is (alpha / r) B A with B: d_out x r, A: r x d_in."""
    _, model, _ = build_lm(alpha=16, init_weights=False)
    down = model.base_model.model.model.layers[1].mlp.down_proj
    A, B = down.hora_A["default"]["lora"], down.hora_B["default"]["lora"]
    assert (A.shape, B.shape) == ((8, 128), (1, 64, 8))
    x = torch.randn(2, 5, 128)
    with torch.no_grad():
        expected = down.base_layer(x) + 2.0 * x @ A.T @ B[0].T
        torch.testing.assert_close(down(x), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("variant", [{}, {"share": "none"}], ids=["default", "none"])
def test_mlp_lora_save_and_load(variant, tmp_path):
    base, model, inputs = build_lm(**variant)
    fresh = copy.deepcopy(base)
    train(model, inputs)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert sum(v.numel() for v in saved.values()) == trainable(model)
    assert sum(".mlp." in k for k in saved) == 2 * 2 * 2  # A and B of up and down in both layers
    loaded = PeftModel.from_pretrained(fresh, tmp_path)
    assert loaded.peft_config["default"].lora_modules == MLP_LORA
    assert len(mlp_lora_layers(loaded)) == 4
    with torch.no_grad():
        assert torch.equal(run(loaded, inputs), run(model, inputs))


def test_mlp_lora_gradients():
    _, model, inputs = build_lm()
    layers = mlp_lora_layers(model)
    run(model, inputs).square().mean().backward()
    for layer in layers.values():  # B starts at zero: B gets a gradient, A none yet (as LoRA)
        assert layer.hora_B["default"]["lora"].grad.abs().sum() > 0
        assert not layer.hora_A["default"]["lora"].grad.any()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    model.zero_grad()
    run(model, inputs).square().mean().backward()
    for layer in layers.values():  # once B is non-zero, A trains too
        assert layer.hora_A["default"]["lora"].grad.abs().sum() > 0


def test_mlp_lora_with_explicit_target_modules():
    paths = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.up_proj", "mlp.down_proj"]
    _, derived, inputs = build_lm()
    base, explicit, _ = build_lm(target_modules=paths)
    assert "up_proj" in derived.peft_config["default"].target_modules  # derived targets include lora_modules
    assert mlp_lora_layers(explicit).keys() == mlp_lora_layers(derived).keys()
    assert hora_parameter_count(explicit.peft_config["default"], base) == hora_parameter_count(
        derived.peft_config["default"], base
    )
    assert trainable(explicit) == trainable(derived)
    # without lora_modules, an explicitly targeted MLP projection has no role: rejected as before
    with pytest.raises(ValueError, match="attention projections only"):
        build_lm(target_modules=paths, lora_modules=None)


@pytest.mark.parametrize("target", ["o_proj", "gate_proj"])
def test_module_neither_attention_nor_lora_is_rejected(target):
    with pytest.raises(ValueError, match="attention projections only"):
        build_lm(target_modules=["q_proj", "up_proj", target])


def test_lora_modules_config_round_trip(tmp_path):
    config = HoraConfig(num_attention_heads=4, lora_modules=("up_proj", "down_proj"))
    assert config.lora_modules == ["up_proj", "down_proj"]
    assert {"up_proj", "down_proj", "q_proj", "v_proj"} <= set(config.target_modules)
    assert "k_proj" not in config.target_modules
    config.save_pretrained(tmp_path)
    loaded = HoraConfig.from_pretrained(tmp_path)
    assert loaded.lora_modules == ["up_proj", "down_proj"]
    assert set(loaded.target_modules) == set(config.target_modules)
