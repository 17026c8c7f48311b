"""Configuration of HoRA (cross-head low-rank adaptation with a joint hypernetwork)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from peft.config import PeftConfig

from peftbench.peft_types import extend_peft_type

HORA = extend_peft_type("hora")

ROLES = ("q", "k", "v")
FUSED = "qkv"  # one Linear holding Q, K and V rows, in that order
LORA = "lora"  # the role of a `lora_modules` Linear: one "head" spanning all its rows, no generator
ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "identity")

# Last component of a module name -> the attention projection it computes.
DEFAULT_ROLE_NAMES = {
    "q_proj": "q",
    "k_proj": "k",
    "v_proj": "v",
    "query": "q",
    "key": "k",
    "value": "v",
    "qkv": FUSED,  # timm ViT `attn.qkv`
    "qkv_proj": FUSED,  # Phi-3 style fused projection
}


@dataclass
class HoraConfig(PeftConfig):
    """
    Configuration of a [`HoraModel`].

    Each adapted attention layer owns one generator, shared by all its heads and by its Q, K and V targets:
    trainable seeds (`A_seed`: r x d_in, one `B_seed_i`: d_h x r per head), MLPs `g_A`, `g_B` and, per target t,
    output projections `P_A^t`, `P_B^t` (r x r, on the rank axis). Then `A^t = P_A^t g_A(A_seed)`,
    `B^t_i = P_B^t g_B(B_seed_i)`, `B^t = [B^t_1; ...; B^t_n]` and `W_t x` becomes `W_t x + (alpha / r) B^t A^t x`.
    Linears named in `lora_modules` (e.g. a LLaMA MLP's up/down projections) take plain LoRA instead: they have no
    heads to couple.

    Args:
        r (`int`): rank of the update of every target. Defaults to 8.
        alpha (`float`): scaling numerator; the update is scaled by `alpha / r` (as LoRA's `lora_alpha`).
        dropout (`float`): dropout on the adapter's input.
        hidden (`int`): hidden width m of the generator MLPs `g(z) = W2 act(W1 z + b1) + b2`.
        activation (`str`): `act`, one of tanh (default), relu, gelu, silu, identity.
        share (`str`): `"heads"` (HoRA: one generator for all heads of a layer), `"none"` (MH-LoRA ablation:
            independent per-head LoRA, a free A per target and a free B_i per head, no generator, so `seeds`, `axis`,
            `hidden` and `activation` are unused; the count equals LoRA's) or `"qv"` (Q/V sharing only: Q and V
            share the seeds and `g_A`, but every head has its own `g_B_i` and, per target, its own `P_B^t_i`, so
            heads share nothing on the B side: `B^t_i = P_B^t_i g_B_i(B_seed_i)`; needs `seeds="shared"`).
        axis (`str`): the axis `g_B` acts on: `"rank"` (default; each row of `B_seed_i` in R^r) or `"head_dim"` (each
            column of `B_seed_i` in R^d_h). `g_A` always acts on the rank axis: A has no head structure.
        proj_axis (`str`): the axis the B-side output projections `P_B` act on (the spec leaves it open when
            `axis="head_dim"`): `"rank"` (default; r x r, as `P_A`, whatever `axis` says: the cheap reading) or
            `"generator"` (the axis `g_B` acts on, so `P_B` projects `g_B`'s output: d_h x d_h with
            `axis="head_dim"`, which costs R (d_h^2 - r^2) more per block; the same as `"rank"` with `axis="rank"`).
        seeds (`str`): `"shared"` (default: Q, K and V are generated from the same seeds) or `"separate"` (each target
            has its own `A_seed` and per-head `B_seed`s; the generator stays shared, so the count is LoRA's plus the
            generators).
        num_attention_heads (`int`): H, the number of query heads. Required.
        num_key_value_heads (`int`, *optional*): number of K/V heads for grouped-query attention; None means H.
            With shared seeds there is one B seed per *query* head; the K/V head j serving query heads
            [j*H/H_kv, (j+1)*H/H_kv) uses the mean of their generated codes `g_B(B_seed_i)`, so Q and V still share
            seeds and a kv head's update is driven by the heads that read it. With `seeds="separate"` and
            `share="none"` K/V have their own H_kv seeds / free blocks.
        head_dim (`int`, *optional*): d_h; None derives it from the out_features of each target.
        targets (`list[str]`): which projections are adapted, a subset of q, k, v. Default q and v. For fused qkv
            modules it selects the row blocks to adapt; a matched separate module must have a role in it.
        role_names (`dict[str, str]`): last module-name component -> role (q, k, v or qkv for a fused projection
            with rows [Q; K; V]). Defaults cover timm `qkv`, `q_proj/k_proj/v_proj` and `query/key/value`.
        lora_modules (`list[str]`, *optional*): last module-name components (e.g. `["up_proj", "down_proj"]`) of
            Linears that take a plain LoRA update `(alpha / r) B A` of the same rank: a free A (r x d_in) and a free B
            (d_out x r, zero when `init_weights`), with no generator and no heads, whatever `share` and `seeds` say
            (the spec lets the MLP projections of LLaMA-style models take plain LoRA). Must not name a key of
            `role_names`.
        target_modules (`Union[list[str], str]`, *optional*): modules to adapt; None selects every module whose
            name has a role in `role_names` that is in `targets`, plus the fused ones and the `lora_modules`. A matched
            module whose last name component is in `lora_modules` takes plain LoRA.
        exclude_modules (`Union[list[str], str]`, *optional*): modules not to adapt.
        modules_to_save (`list[str]`, *optional*): extra modules to train and save (e.g. a classifier head).
        init_weights (`bool`): True (default) starts the B-side at zero, so the adapted model equals the base model;
            False initialises it randomly (for tests).
    """

    r: int = field(default=8, metadata={"help": "Rank of each target's update."})
    alpha: float = field(default=8, metadata={"help": "The update is scaled by alpha / r."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter input."})
    hidden: int = field(default=32, metadata={"help": "Hidden width of the generator MLPs."})
    activation: str = field(default="tanh", metadata={"help": f"Generator activation, one of {ACTIVATIONS}."})
    share: Literal["heads", "none", "qv"] = field(default="heads", metadata={"help": "heads | none | qv"})
    axis: Literal["rank", "head_dim"] = field(default="rank", metadata={"help": "Axis g_B acts on: rank | head_dim"})
    proj_axis: Literal["rank", "generator"] = field(
        default="rank", metadata={"help": "Axis P_B acts on: rank (r x r) | generator (g_B's axis)"}
    )
    seeds: Literal["shared", "separate"] = field(default="shared", metadata={"help": "shared | separate"})
    num_attention_heads: Optional[int] = field(default=None, metadata={"help": "Number of query heads (required)."})
    num_key_value_heads: Optional[int] = field(default=None, metadata={"help": "K/V heads (GQA); None = heads."})
    head_dim: Optional[int] = field(default=None, metadata={"help": "Head width; None derives it."})
    targets: list[str] = field(default_factory=lambda: ["q", "v"], metadata={"help": "Adapted roles (q, k, v)."})
    role_names: dict[str, str] = field(
        default_factory=lambda: dict(DEFAULT_ROLE_NAMES),
        metadata={"help": "Module name -> role (q, k, v or qkv)."},
    )
    lora_modules: Optional[list[str]] = field(
        default=None, metadata={"help": "Last module-name components that take plain LoRA (e.g. MLP projections)."}
    )
    target_modules: Optional[Union[list[str], str]] = field(
        default=None,
        metadata={"help": "Modules to adapt; None derives them from targets, role_names and lora_modules."},
    )
    exclude_modules: Optional[Union[list[str], str]] = field(default=None, metadata={"help": "Modules to skip."})
    modules_to_save: Optional[list[str]] = field(default=None, metadata={"help": "Extra modules to train and save."})
    init_weights: bool = field(default=True, metadata={"help": "Zero B-side init (identity at step 0)."})

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = HORA
        self._validate()
        self.targets = [role for role in ROLES if role in self.targets]  # canonical order
        self.lora_modules = list(self.lora_modules) if self.lora_modules else None
        if self.target_modules is None:
            self.target_modules = sorted(
                [name for name, role in self.role_names.items() if role in self.targets or role == FUSED]
                + (self.lora_modules or [])
            )
        elif isinstance(self.target_modules, (list, tuple)):
            self.target_modules = set(self.target_modules)

    def _validate(self) -> None:
        def positive_int(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"HoraConfig.{name} must be a positive int, got {value!r}")

        positive_int("r", self.r)
        positive_int("hidden", self.hidden)
        if not self.alpha > 0:
            raise ValueError(f"HoraConfig.alpha must be > 0, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"HoraConfig.dropout must be in [0, 1), got {self.dropout!r}")
        for name, allowed in (
            ("activation", ACTIVATIONS),
            ("share", ("heads", "none", "qv")),
            ("axis", ("rank", "head_dim")),
            ("proj_axis", ("rank", "generator")),
            ("seeds", ("shared", "separate")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"HoraConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.share == "qv" and self.seeds != "shared":
            raise ValueError('share="qv" means Q and V share their seeds; it needs seeds="shared"')
        if self.num_attention_heads is None:
            raise ValueError("HoraConfig.num_attention_heads is required (the number of query heads)")
        positive_int("num_attention_heads", self.num_attention_heads)
        if self.num_key_value_heads is not None:
            positive_int("num_key_value_heads", self.num_key_value_heads)
            if self.num_attention_heads % self.num_key_value_heads:
                raise ValueError(
                    f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                    f"num_key_value_heads ({self.num_key_value_heads})"
                )
        if self.head_dim is not None:
            positive_int("head_dim", self.head_dim)
        if not self.targets or set(self.targets) - set(ROLES):
            raise ValueError(f"HoraConfig.targets must be a non-empty subset of {ROLES}, got {self.targets!r}")
        bad = {name: role for name, role in self.role_names.items() if role not in (*ROLES, FUSED)}
        if bad:
            raise ValueError(f"HoraConfig.role_names values must be one of {(*ROLES, FUSED)}, got {bad}")
        if self.lora_modules is not None:
            # a bare string would be read letter by letter; a dotted name would never equal a last component
            if not isinstance(self.lora_modules, (list, tuple)) or not all(
                isinstance(name, str) and name and "." not in name for name in self.lora_modules
            ):
                raise ValueError(
                    "HoraConfig.lora_modules must be a list of last module-name components such as 'up_proj', "
                    f"got {self.lora_modules!r}"
                )
            clash = sorted(set(self.lora_modules) & set(self.role_names))
            if clash:
                raise ValueError(f"HoraConfig.lora_modules {clash} are attention projections in role_names")

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    def layout(self, module_name: str, out_features: int) -> tuple[int, dict[str, tuple[int, int, int]]]:
        """Head width and adapted row blocks `{role: (first_row, end_row, n_heads)}` of one target Linear.

        Shared by the tuner (to build layers) and the closed-form count, so both see the same geometry. A
        `lora_modules` Linear is one block `{"lora": (0, out_features, 1)}` with head_dim = out_features: without a
        generator, the free A and per-head B of MH-LoRA are then exactly plain LoRA.
        """
        last = module_name.rsplit(".", 1)[-1]
        if last in (self.lora_modules or ()):
            return out_features, {LORA: (0, out_features, 1)}
        role = self.role_names.get(last)
        heads = {"q": self.num_attention_heads, "k": self.kv_heads, "v": self.kv_heads}
        if role == FUSED:
            total_heads = sum(heads.values())
            head_dim = self.head_dim or out_features // total_heads
            if head_dim * total_heads != out_features:
                raise ValueError(
                    f"{module_name}: fused qkv out_features={out_features} is not (H + 2 H_kv) * head_dim "
                    f"with H={heads['q']}, H_kv={heads['k']}, head_dim={self.head_dim}"
                )
            blocks, start = {}, 0
            for name in ROLES:  # rows [Q; K; V]
                stop = start + heads[name] * head_dim
                if name in self.targets:
                    blocks[name] = (start, stop, heads[name])
                start = stop
            return head_dim, blocks
        if role in heads:
            if role not in self.targets:
                raise ValueError(f"{module_name} is a {role!r} projection, but {role!r} is not in {self.targets=}")
            head_dim = self.head_dim or out_features // heads[role]
            if head_dim * heads[role] != out_features:
                raise ValueError(
                    f"{module_name}: out_features={out_features} is not {heads[role]} heads * head_dim={head_dim}"
                )
            return head_dim, {role: (0, out_features, heads[role])}
        raise ValueError(
            f"HoRA adapts attention projections only, plus plain LoRA on lora_modules; {module_name!r} has no role "
            f"in role_names (known names: {sorted(self.role_names)}) and is not in {self.lora_modules=}"
        )
