"""HoRA layers: the per-block generator and the tuner layer wrapping a q/k/v (or fused qkv) Linear, or a plain-LoRA
one (`lora_modules`)."""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn

from .config import HoraConfig

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "identity": nn.Identity}


def _kaiming_(t: torch.Tensor) -> torch.Tensor:
    """LoRA's A init (kaiming-uniform, a=sqrt(5)) with fan-in = the last axis, the one the matrix contracts."""
    bound = 1.0 / math.sqrt(t.shape[-1])
    return nn.init.uniform_(t, -bound, bound)


def _unit_(t: torch.Tensor) -> torch.Tensor:
    """Unit-gain uniform init (variance 1 / fan-in): keeps the scale of what the map is applied to."""
    bound = math.sqrt(3.0 / t.shape[-1])
    return nn.init.uniform_(t, -bound, bound)


def _linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`x @ w.mT` on the last axis of x; w is (out, in), or (n, out, in) with one map per index of x's first axis.

    The leading axes of x are folded by hand. `torch.matmul` folds a (non-contiguous) batch into one `mm` only
    when the 2-D operand requires grad, and runs `bmm` otherwise; the two kernels may round differently, so a
    frozen (reloaded) adapter would not reproduce the trained one bit for bit. Here the kernel depends on shapes only.
    """
    if w.dim() == 3:
        return torch.bmm(x, w.mT)
    return (x.reshape(-1, x.shape[-1]) @ w.mT).view(*x.shape[:-1], w.shape[-2])


class HoraMLP(nn.Module):
    """`g(z) = W2 act(W1 z + b1) + b2` on the last axis of z; `groups > 1` keeps one MLP per leading index."""

    def __init__(self, dim: int, hidden: int, activation: str, groups: int = 1):
        super().__init__()
        lead = (groups,) if groups > 1 else ()
        bias_lead = (groups, 1) if groups > 1 else ()  # broadcast over the rows of each group
        self.w1 = nn.Parameter(torch.empty(*lead, hidden, dim))
        self.b1 = nn.Parameter(torch.empty(*bias_lead, hidden))
        self.w2 = nn.Parameter(torch.empty(*lead, dim, hidden))
        self.b2 = nn.Parameter(torch.empty(*bias_lead, dim))
        self.act = _ACTIVATIONS[activation]()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Zero biases and unit-gain weights: g starts as a near-isometry of its input, so the seeds' structure and
        # scale reach A and B. (nn.Linear's default bias would dominate the small seeds and collapse every column
        # of A onto one vector.)
        _unit_(self.w1)
        _unit_(self.w2)
        nn.init.zeros_(self.b1)
        nn.init.zeros_(self.b2)

    def extra_repr(self) -> str:
        groups = f", groups={self.w1.shape[0]}" if self.w1.dim() == 3 else ""
        return f"dim={self.w1.shape[-1]}, hidden={self.w1.shape[-2]}{groups}"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _linear(self.act(_linear(z, self.w1) + self.b1), self.w2) + self.b2


class HoraGenerator(nn.Module):
    """The hypernetwork of one attention layer, shared by all its heads and all its targets.

    Owned by `HoraModel` (one per adapter and block) so it is saved once; the layers of the block hold plain
    references. With `seeds="shared"` it also owns the seeds: `A_seed` (r x d_in) and one `B_seed` (d_h x r) per
    query head.
    """

    def __init__(self, config: HoraConfig, in_features: int, head_dim: int):
        super().__init__()
        r, heads = config.r, config.num_attention_heads
        self.in_features, self.head_dim = in_features, head_dim
        self.shared_seeds = config.seeds == "shared"
        self.axis = config.axis
        self.g_A = HoraMLP(r, config.hidden, config.activation)
        # share="qv": one g_B per head (and one P_B per head in the layers), so heads share nothing on the B side.
        groups = heads if config.share == "qv" else 1
        self.g_B = HoraMLP(r if config.axis == "rank" else head_dim, config.hidden, config.activation, groups)
        if self.shared_seeds:
            self.A_seed = nn.Parameter(_kaiming_(torch.empty(r, in_features)))
            self.B_seed = nn.Parameter(_kaiming_(torch.empty(heads, head_dim, r)))
        # Codes generated in the block's current forward pass, by grad mode; None: no pass is open (see open_pass).
        self._codes: dict[bool, tuple[torch.Tensor, torch.Tensor]] | None = None

    def check(self, name: str, in_features: int, head_dim: int) -> None:
        """Targets of one block must fit the seeds and generator that they share."""
        if self.shared_seeds and in_features != self.in_features:
            raise ValueError(
                f"{name}: in_features={in_features} differs from its block's ({self.in_features}); "
                'shared seeds need equal inputs, use seeds="separate"'
            )
        if (self.shared_seeds or self.axis == "head_dim") and head_dim != self.head_dim:
            raise ValueError(f"{name}: head_dim={head_dim} differs from its block's ({self.head_dim})")

    def code_A(self, seed: torch.Tensor) -> torch.Tensor:
        """g_A on the rank axis: (r, d_in) -> (r, d_in), each column mapped by g_A."""
        return self.g_A(seed.T).T

    def code_B(self, seed: torch.Tensor) -> torch.Tensor:
        """g_B on each head's seed: (n_heads, d_h, r) -> (n_heads, d_h, r)."""
        if self.axis == "rank":
            return self.g_B(seed)
        return self.g_B(seed.mT).mT

    def shared_codes(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """Generated codes of the shared seeds, or None when each target has its own seeds.

        Within one forward pass of the block they are computed once and reused by every target of the block
        (separate q, k and v Linears), and autograd backpropagates through that one computation.
        """
        if not self.shared_seeds:
            return None
        if self._codes is None:
            return self.code_A(self.A_seed), self.code_B(self.B_seed)
        grad = torch.is_grad_enabled()  # a no-grad pass (reentrant checkpointing) must not feed a grad-enabled one
        if grad not in self._codes:
            self._codes[grad] = self.code_A(self.A_seed), self.code_B(self.B_seed)
        return self._codes[grad]

    def open_pass(self, *_) -> None:
        """Forward pre-hook of the block that calls the targets. The pass is the block's, not the model's: a
        checkpointed block recomputed in the backward pass then generates its codes exactly as it first did. A
        fresh cache each time, so a pass that never closed (interrupted) leaves nothing stale behind."""
        self._codes = {}

    def close_pass(self, *_) -> None:
        """Forward hook: the codes are dropped, since the optimizer will change the seeds before the next pass."""
        self._codes = None


def _group_heads(codes: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Per-query-head codes (H, d_h, r) -> n_heads kv heads: kv head j takes the mean over its query group."""
    if codes.shape[0] == n_heads:
        return codes
    return codes.unflatten(0, (n_heads, -1)).mean(1)


class HoraLayer(BaseTunerLayer):
    """HoRA state of one target Linear; per adapter and per role (q, k, v or lora) it owns:

    - `hora_proj_A`, `hora_proj_B`: the target's output projections P_A (r x r) and P_B of the generator; P_B is
      p x p with p = r, or d_h when it acts on g_B's head_dim axis (`proj_axis`), and one per head (n_heads x p x p)
      with `share="qv"` (a P_B shared by the heads would couple their B rows);
    - `hora_A`, `hora_B`: seeds of its own (`seeds="separate"`: A_seed r x d_in, B seeds n_heads x d_h x r), or the
      free A and per-head B of MH-LoRA (`share="none"`) and of plain LoRA (role lora: one head of all d_out rows);
      empty when the seeds are the block's.
    """

    adapter_layer_names = ("hora_A", "hora_B", "hora_proj_A", "hora_proj_B")
    other_param_names = ("r", "scaling", "hora_dropout", "hora_layout", "hora_generator", "hora_proj_head_dim")

    def __init__(self, base_layer: nn.Module, **kwargs):
        self.base_layer = base_layer
        self.r: dict[str, int] = {}
        self.scaling: dict[str, float] = {}
        self.hora_layout: dict[str, dict[str, tuple[int, int, int]]] = {}  # role -> (first_row, end_row, n_heads)
        self.hora_proj_head_dim: dict[str, bool] = {}  # P_B acts on the head_dim axis (else on the rank axis)
        self.hora_dropout = nn.ModuleDict({})
        self.hora_A = nn.ModuleDict({})
        self.hora_B = nn.ModuleDict({})
        self.hora_proj_A = nn.ModuleDict({})
        self.hora_proj_B = nn.ModuleDict({})
        # Plain dict, not registered: the generator belongs to HoraModel and is saved there, exactly once.
        self.hora_generator: dict[str, HoraGenerator] = {}
        self._disable_adapters = False
        self.merged_adapters = []
        base = self.get_base_layer()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"HoRA supports torch.nn.Linear targets only, got {type(base).__name__}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.kwargs = kwargs

    def update_layer(
        self,
        adapter_name: str,
        config: HoraConfig,
        layout: dict[str, tuple[int, int, int]],
        head_dim: int,
        generator: Optional[HoraGenerator],
    ) -> None:
        r = config.r
        self.r[adapter_name] = r
        self.scaling[adapter_name] = config.alpha / r
        self.hora_layout[adapter_name] = layout
        self.hora_dropout[adapter_name] = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        own_seeds = generator is None or not generator.shared_seeds

        def per_role(shape_of):  # one parameter per adapted role, shaped from the role's head count
            return nn.ParameterDict({role: nn.Parameter(torch.empty(shape_of(n))) for role, (*_, n) in layout.items()})

        if own_seeds:
            self.hora_A[adapter_name] = per_role(lambda n: (r, self.in_features))
            self.hora_B[adapter_name] = per_role(lambda n: (n, head_dim, r))
        if generator is not None:
            on_head_dim = config.proj_axis == "generator" and config.axis == "head_dim"
            self.hora_proj_head_dim[adapter_name] = on_head_dim
            p, per_head = (head_dim if on_head_dim else r), config.share == "qv"
            self.hora_proj_A[adapter_name] = per_role(lambda n: (r, r))
            self.hora_proj_B[adapter_name] = per_role(lambda n: (n, p, p) if per_head else (p, p))
            self.hora_generator[adapter_name] = generator
        self.reset_hora_parameters(adapter_name, config.init_weights)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    @torch.no_grad()
    def reset_hora_parameters(self, adapter_name: str, init_weights: bool = True) -> None:
        def params(container):
            return container[adapter_name].values() if adapter_name in container else ()

        generated = adapter_name in self.hora_generator
        for p in params(self.hora_A):
            _kaiming_(p)  # as LoRA's A
        for p in params(self.hora_B):
            if generated or not init_weights:
                _kaiming_(p)  # a B *seed* must be random: with zero seeds and zero P_B no gradient would flow
            else:
                nn.init.zeros_(p)  # MH-LoRA's free B, as LoRA's
        for p in params(self.hora_proj_A):
            _unit_(p)
        for p in params(self.hora_proj_B):
            if init_weights:
                nn.init.zeros_(p)  # the adapted model equals the base model at step 0
            else:
                _unit_(p)

    def hora_factors(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate this layer's update as `delta W = scaling * B @ A` with A: (R r, d_in), B: (d_out, R r).

        R is the number of adapted roles; B is zero outside each role's rows and rank columns, so rows of
        non-adapted roles (K of a fused qkv by default) get exactly nothing. Called once per forward, not per token;
        within one forward of the block (`HoraGenerator.open_pass`) its generator runs once for all its targets.
        """
        r = self.r[adapter_name]
        layout = self.hora_layout[adapter_name]
        generator = self.hora_generator.get(adapter_name)
        shared = generator.shared_codes() if generator is not None else None  # once for all roles of this layer
        A_parts, B = [], None
        for i, (role, (start, stop, n_heads)) in enumerate(layout.items()):
            if generator is None:  # MH-LoRA: free A, free per-head B
                a, b = self.hora_A[adapter_name][role], self.hora_B[adapter_name][role]
            else:
                if shared is not None:
                    a, b = shared[0], _group_heads(shared[1], n_heads)
                else:
                    a = generator.code_A(self.hora_A[adapter_name][role])
                    b = generator.code_B(self.hora_B[adapter_name][role])
                a = self.hora_proj_A[adapter_name][role] @ a
                proj_B = self.hora_proj_B[adapter_name][role]  # per head under "qv"
                if self.hora_proj_head_dim[adapter_name]:  # proj_axis="generator" with axis="head_dim"
                    b = _linear(b.mT, proj_B).mT
                else:
                    b = _linear(b, proj_B)  # on the rank axis
            A_parts.append(a)
            if len(layout) == 1 and (start, stop) == (0, self.out_features):
                return a, b.flatten(0, 1)  # a separate q, k or v Linear: its heads stacked are the whole B
            if B is None:
                B = a.new_zeros(self.out_features, r * len(layout))
            B[start:stop, i * r : (i + 1) * r] = b.flatten(0, 1)  # heads stacked in head order
        return torch.cat(A_parts), B

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        A, B = self.hora_factors(adapter_name)
        return self.scaling[adapter_name] * (B @ A)


class Linear(nn.Module, HoraLayer):
    """HoRA on a torch.nn.Linear computing q, k, v, or several of them (fused qkv); plain LoRA on a lora_modules one."""

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: HoraConfig,
        layout: dict[str, tuple[int, int, int]],
        head_dim: int,
        generator: Optional[HoraGenerator],
        **kwargs,
    ) -> None:
        super().__init__()
        HoraLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, layout, head_dim, generator)

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        for adapter in check_adapters_to_merge(self, adapter_names):
            if adapter not in self.scaling:
                continue
            weight = self.get_base_weight()
            merged = weight + self.get_delta_weight(adapter).to(weight.dtype)
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"NaNs detected in the merged weights. The adapter {adapter} seems to be broken")
            self.set_base_weight(merged)
            self.merged_adapters.append(adapter)

    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        while self.merged_adapters:
            adapter = self.merged_adapters.pop()
            weight = self.get_base_weight()
            self.set_base_weight(weight - self.get_delta_weight(adapter).to(weight.dtype))

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        previous_dtype = result.dtype
        for adapter in self.active_adapters:
            if adapter not in self.scaling:
                continue
            A, B = self.hora_factors(adapter)
            h = self.hora_dropout[adapter](self._cast_input_dtype(x, A.dtype))
            # two skinny matmuls on the tokens folded by hand (see _linear: the kernel must not depend on grad)
            delta = F.linear(F.linear(h.reshape(-1, h.shape[-1]), A), B).view(*h.shape[:-1], -1)
            result = result + self.scaling[adapter] * delta
        return result.to(previous_dtype)

    def __repr__(self) -> str:
        return "hora." + super().__repr__()
