"""Wrap timm and transformers models into Backbones with a uniform feature interface."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError
from .base import AttentionLayout, Backbone


class SplitQKV(nn.Module):
    """timm's fused ``qkv`` Linear as three Linears with the same weights.

    peft's tuners would adapt k along with q and v on the fused layer; split, every method sees
    the same ``q`` and ``v`` targets the literature adapts, and k stays frozen.
    """

    def __init__(self, fused: nn.Linear):
        super().__init__()
        d_out = fused.out_features // 3
        bias = fused.bias is not None
        self.q, self.k, self.v = (nn.Linear(fused.in_features, d_out, bias=bias) for _ in range(3))
        with torch.no_grad():
            for i, part in enumerate((self.q, self.k, self.v)):
                part.weight.copy_(fused.weight[i * d_out:(i + 1) * d_out])
                if bias:
                    part.bias.copy_(fused.bias[i * d_out:(i + 1) * d_out])

    def forward(self, x):
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


class ImageEncoder(nn.Module):
    """Maps pixel values to pooled features [batch, dim]; ``model`` is the adapted network."""

    def __init__(self, model: nn.Module, hf: bool):
        super().__init__()
        self.model = model
        self.hf = hf

    def forward(self, pixel_values):
        if self.hf:
            return self.model(pixel_values=pixel_values).pooler_output
        return self.model(pixel_values)


def timm_backbone(name: str, model: nn.Module, image_size: int) -> Backbone:
    for block in model.blocks:
        block.attn.qkv = SplitQKV(block.attn.qkv)
    attn = model.blocks[0].attn
    mean, std = model.pretrained_cfg.get("mean"), model.pretrained_cfg.get("std")
    layout = AttentionLayout(
        num_layers=len(model.blocks), hidden_size=model.embed_dim, num_heads=attn.num_heads,
        num_kv_heads=attn.num_heads, head_dim=attn.head_dim,
        q="attn.qkv.q", k="attn.qkv.k", v="attn.qkv.v", out="attn.proj",
        mlp_up=("mlp.fc1",), mlp_down="mlp.fc2",
    )
    return Backbone(
        name=name, module=ImageEncoder(model.eval(), hf=False), family="vit", modality="image",
        feature_dim=model.num_features, layout=layout, image_size=image_size,
        mean=tuple(mean) if mean else Backbone.mean, std=tuple(std) if std else Backbone.std,
    )


def _block_names(model: nn.Module) -> set[str]:
    """Names of the Linears of the first transformer block, relative to the block."""
    names = set()
    for full, module in model.named_modules():
        parts = full.split(".")
        if isinstance(module, nn.Linear) and "0" in parts:
            names.add(".".join(parts[parts.index("0") + 1:]))
    return names


def _pick(names: set[str], *candidates: str) -> str:
    for candidate in candidates:  # an exact name beats a suffix ("output.dense" in BERT)
        if candidate in names:
            return candidate
        for name in sorted(names):
            if name.endswith("." + candidate):
                return name
    raise UsageError(f"cannot find the {'/'.join(candidates)} projection among this backbone's "
                     f"Linear layers ({', '.join(sorted(names)) or 'none'}): attention layout not supported")


def _layout(model: nn.Module, config) -> AttentionLayout:
    names = _block_names(model)
    heads = config.num_attention_heads
    up = ("fc1", "gate_proj", "up_proj", "intermediate.dense")
    mlp_up = tuple(n for n in sorted(names) if n.split(".")[-1] in up)
    return AttentionLayout(
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        q=_pick(names, "q_proj", "query"),
        k=_pick(names, "k_proj", "key"),
        v=_pick(names, "v_proj", "value"),
        out=_pick(names, "o_proj", "out_proj", "attention.output.dense"),
        mlp_up=mlp_up or (_pick(names, "fc1", "up_proj", "intermediate.dense"),),
        mlp_down=_pick(names, "fc2", "down_proj", "output.dense"),
    )


def hf_image_backbone(name: str, model: nn.Module, image_size: int) -> Backbone:
    return Backbone(
        name=name, module=ImageEncoder(model.eval(), hf=True), family="vit", modality="image",
        feature_dim=model.config.hidden_size, layout=_layout(model, model.config),
        image_size=image_size,
    )


def hf_text_backbone(name: str, model: nn.Module, tokenizer) -> Backbone:
    family = "llama" if model.config.model_type in ("llama", "mistral", "qwen2") else "bert"
    return Backbone(
        name=name, module=model.eval(), family=family, modality="text",
        feature_dim=model.config.hidden_size, layout=_layout(model, model.config),
        tokenizer=tokenizer,
    )
