"""What the harness knows about a backbone: the module, its features and its attention layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class AttentionLayout:
    """Where a transformer keeps its attention and MLP projections.

    Module names are suffixes relative to one block (``attention.q_proj``), so a method can
    build peft ``target_modules`` from them for any number of blocks.
    """

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    q: str
    k: str
    v: str
    out: str  # attention output projection
    mlp_up: tuple[str, ...]  # MLP input projections (fc1, or gate_proj and up_proj)
    mlp_down: str  # MLP output projection
    fused_qkv: str | None = None  # set when q, k and v live in one Linear (timm's ``attn.qkv``)


@dataclass
class Backbone:
    """A frozen pretrained encoder and how to read features from it.

    ``module`` maps a batch to features of shape [batch, feature_dim] (images) or to the
    model's own output (language models); the methods adapt modules inside it.
    """

    name: str
    module: nn.Module
    family: str  # "vit" | "llama" | "bert"
    modality: str  # "image" | "text"
    feature_dim: int
    layout: AttentionLayout
    image_size: int | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    tokenizer: object | None = None
    extra: dict = field(default_factory=dict)

    @property
    def total_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())
