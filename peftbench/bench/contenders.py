"""What the benchmark times side by side: every method sized to the budget (or as given) and the
two references below them, each on its own copy of the backbone.

- the probe (``linear``): the frozen backbone and a trained head, no backward through the backbone
  (for a language model, which has no head, just the forward pass and the loss: ``forward``);
- ``floor``: the same plus a backward pass through every block's activations with no weight
  gradient, what any method with an adapter in the first block must at least pay. The first
  block's input is made to require grad, which makes autograd go all the way down.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..spec import MethodSpec, parse_specs
from .workload import Workload

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..method import Method


def first_block(module: nn.Module, layout) -> nn.Module:
    """The first transformer block: element 0 of the list of ``num_layers`` blocks holding q."""
    from torch import nn
    for container in module.modules():
        if isinstance(container, (nn.ModuleList, nn.Sequential)) and len(container) == layout.num_layers:
            names = (name for name, _ in container[0].named_modules())
            if any(name == layout.q or name.endswith("." + layout.q) for name in names):
                return container[0]
    raise UsageError(f"cannot find the first of {layout.num_layers} transformer blocks in this backbone")


class InputGrad:
    """Makes a block's input require grad, so backward runs through every block above it.

    The input is detached first: nothing below the block (embeddings) gets a gradient.
    ``inputs`` keeps the last one, to check that it got its gradient.
    """

    def __init__(self, block: nn.Module):
        self.inputs: torch.Tensor | None = None
        self.handle = block.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        import torch
        if not torch.is_grad_enabled():
            return None
        if args:
            self.inputs = args[0].detach().requires_grad_()
            return (self.inputs, *args[1:]), kwargs
        self.inputs = kwargs["hidden_states"].detach().requires_grad_()
        return args, {**kwargs, "hidden_states": self.inputs}


def floor_model(backbone, workload: Workload) -> tuple[nn.Module, InputGrad]:
    module = copy.deepcopy(backbone.module).requires_grad_(False)
    hook = InputGrad(first_block(module, backbone.layout))
    return workload.wrap(module), hook


@dataclass
class Contender:
    label: str
    kind: str  # "method" or "reference"
    model: nn.Module
    method: object | None = None
    size: dict = field(default_factory=dict)
    hook: InputGrad | None = None
    optimizer: torch.optim.Optimizer | None = None
    step_times: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None
    trainable_params: int = 0

    def __post_init__(self):
        import torch
        from torch import nn
        params = [p for p in self.model.parameters() if p.requires_grad]
        head = getattr(self.model, "head", None)  # counted apart, as the budget is
        self.trainable_params = sum(p.numel() for p in params) - sum(p.numel() for p in head.parameters()) \
            if isinstance(head, nn.Linear) else sum(p.numel() for p in params)
        self.optimizer = torch.optim.AdamW(params, lr=1e-5) if params else None


def parse_methods(spec: str) -> list[MethodSpec]:
    """``lora,hora,hora[r=8,hidden=16]``: methods, each optionally with an explicit size or variant options."""
    specs = parse_specs(spec)
    if not specs:
        raise UsageError("no methods given (--methods lora,hora)")
    return specs


def _takes(method: Method) -> str:
    size = ", ".join(method.knobs) or "no size"
    if method.knobs and method.fine_knobs:
        size += f" (and optionally {', '.join(method.fine_knobs)})"
    return f"{method.name} takes {size}" + (f"; options {', '.join(method.options)}" if method.options else "")


def sized_spec(spec: MethodSpec, method: Method) -> tuple[Method, dict | None]:
    """The method (a variant where the spec names options) and the size the spec gives, None if none."""
    knobs = (*method.knobs, *method.fine_knobs)
    size = {k: v for k, v in spec.options.items() if k in knobs}
    options = {k: v for k, v in spec.options.items() if k not in knobs}
    unknown = [k for k in options if k not in method.options]
    if unknown:
        raise UsageError(f"{_takes(method)}, got '{unknown[0]}' in '{spec}'")
    if any(not isinstance(v, int) or isinstance(v, bool) for v in size.values()):
        raise UsageError(f"cannot parse method size '{spec}' (sizes are whole numbers, e.g. {method.name}[r=8])")
    if size and not set(method.knobs) <= set(size):
        raise UsageError(f"{_takes(method)}, got {', '.join(size)} in '{spec}'")
    return (method.variant(options) if options else method), (size or None)


def _label(name: str, size: dict) -> str:
    """``lora r=8``: the size's knobs, leaving out a finer knob at zero (``plus1=0``)."""
    return f"{name} {' '.join(f'{k}={v}' for k, v in size.items() if v or k == 'r')}".strip()


def sized_methods(spec: str, backbone, target: int, reference: str, challenger: str) -> list[tuple[Method, dict]]:
    """Every method asked for with its size. The reference is always there: the ratios refer to it.
    When the challenger's budget rank differs from the reference's, it is measured at the
    reference's rank too (its speed target is at equal rank)."""
    from ..budget import solve
    from ..plan import resolve_methods

    wanted = parse_methods(spec)
    bases = resolve_methods(",".join(dict.fromkeys([reference, *(s.name for s in wanted)])))
    wanted = [sized_spec(s, bases[s.name]) for s in wanted]
    if reference not in [method.name for method, _ in wanted]:
        wanted.insert(0, (bases[reference], None))
    sized = []
    for method, size in wanted:
        method.check(backbone)
        sized.append((method, size if size is not None else solve(method, backbone, target).size))
    reference_size = next(size for method, size in sized if method.name == reference)
    rivals = [(m, s) for m, s in sized if m.name == challenger]
    if rivals and "r" in reference_size and all(s.get("r") != reference_size["r"] for _, s in rivals):
        sized.insert(sized.index(rivals[0]) + 1, (rivals[0][0], {"r": reference_size["r"]}))
    return sized


def contenders(backbone, workload: Workload, spec: str, budget_text: str, reference: str, challenger: str,
               probe: str) -> tuple[list[Contender], int]:
    """The floor, the probe and every method, each on its own copy of the backbone; and the budget
    in parameters."""
    import torch

    from ..budget import budget_params, parse_budget
    from ..plan import resolve_methods

    budget = parse_budget(budget_text)
    target = budget_params(budget, backbone, resolve_methods(budget.method) if budget.method else {})
    sized = sized_methods(spec, backbone, target, reference, challenger)
    floor, hook = floor_model(backbone, workload)
    probe_method = resolve_methods(probe)[probe]
    probed = workload.wrap(probe_method.apply(copy.deepcopy(backbone), {}, {}))
    out = [Contender("floor", "reference", floor, hook=hook),
           Contender(probe if workload.unit == "images" else "forward", "reference", probed)]
    seen = set()
    for method, size in sized:
        label = _label(method.name, size)
        if label in seen:
            continue
        seen.add(label)
        torch.manual_seed(0)
        adapted = method.apply(copy.deepcopy(backbone), size, dict(method.defaults))
        out.append(Contender(label, "method", workload.wrap(adapted), method=method, size=size))
    return out, target
