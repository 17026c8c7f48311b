"""A frozen one-layer multi-head attention model with random weights: the student of the
``hmoe`` teacher-student task (and the frozen part of its teacher).

It maps token sequences [batch, tokens, width] to sequences of the same shape. q, k, v and o
are separate Linears, so every method adapts the same q and v projections it adapts on a ViT.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import AttentionLayout, Backbone

WIDTH, HEADS = 32, 8
#: the output projection's gain: outputs of order one, so an MSE near 1 means "no better than the base"
OUT_GAIN = 4.0
SEED = 0


class Attention(nn.Module):
    """Softmax attention over all tokens of a sequence, no masking, no MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(width, width, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape

        def split(t):  # [batch, tokens, width] -> [batch, heads, tokens, head_dim]
            return t.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        mixed = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.o_proj(mixed.transpose(1, 2).reshape(batch, tokens, width))


class OneLayerAttention(nn.Module):
    """One attention block under ``layers.0``, the name shape the methods' layouts expect."""

    def __init__(self, width: int = WIDTH, heads: int = HEADS):
        super().__init__()
        self.layers = nn.ModuleList([Attention(width, heads)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def attention_model(width: int = WIDTH, heads: int = HEADS, seed: int = SEED) -> OneLayerAttention:
    """The same frozen weights in every process: Gaussian with variance 1/width, o scaled by OUT_GAIN."""
    model = OneLayerAttention(width, heads)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            weight = getattr(model.layers[0], name).weight
            weight.copy_(torch.randn(weight.shape, generator=generator) / width ** 0.5)
        model.layers[0].o_proj.weight.mul_(OUT_GAIN)
    return model.requires_grad_(False).eval()


def attention_backbone(name: str = "hmoe-attention", width: int = WIDTH, heads: int = HEADS,
                       seed: int = SEED) -> Backbone:
    layout = AttentionLayout(
        num_layers=1, hidden_size=width, num_heads=heads, num_kv_heads=heads, head_dim=width // heads,
        q="q_proj", k="k_proj", v="v_proj", out="o_proj",
        # no MLP: the attention output stands in, so bottleneck adapters still have a place
        mlp_up=(), mlp_down="o_proj",
    )
    # family "vit": the methods adapt q and v, as on an encoder
    return Backbone(name=name, module=attention_model(width, heads, seed), family="vit", modality="tokens",
                    feature_dim=width, layout=layout, image_size=None)
