"""What the harness knows about a backbone: the module, its features and its attention layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..records import Modality


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

    def modules(self, role: str) -> list[str]:
        """The module names a target role names: q, k, v, o (attention output), up, down (MLP)."""
        if role == "up":  # Llama's up_proj, not its gate: the projections the literature adapts
            return [name for name in self.mlp_up if name.endswith("up_proj")] or list(self.mlp_up)
        names = {"q": self.q, "k": self.k, "v": self.v, "o": self.out, "down": self.mlp_down}
        return [names[role]]


#: What ``targets`` may name, and what each family adapts by default: the literature's choice
#: (q and v on encoders, q, k, v, up and down on Llama-family models).
TARGET_ROLES = ("q", "k", "v", "o", "up", "down")
DEFAULT_TARGETS = {"llama": ("q", "k", "v", "up", "down")}
ENCODER_TARGETS = ("q", "v")


@dataclass
class Backbone:
    """A frozen pretrained encoder and how to read features from it.

    ``module`` maps a batch to features of shape [batch, feature_dim] (images) or to the
    model's own output (language models); the methods adapt modules inside it.
    """

    name: str
    module: nn.Module
    family: str  # "vit" | "llama" | "bert"
    modality: Modality
    feature_dim: int
    layout: AttentionLayout
    image_size: int | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    tokenizer: object | None = None
    extra: dict = field(default_factory=dict)
    #: the target roles every method adapts (the recipe's ``targets``); empty: the family's default
    targets: tuple[str, ...] = ()

    def __post_init__(self):
        self.modality = Modality(self.modality)

    @property
    def target_roles(self) -> tuple[str, ...]:
        return self.targets or DEFAULT_TARGETS.get(self.family, ENCODER_TARGETS)

    @property
    def target_modules(self) -> list[str]:
        """Module-name suffixes of the targets, for peft's ``target_modules``."""
        return [name for role in self.target_roles for name in self.layout.modules(role)]

    @property
    def total_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())
