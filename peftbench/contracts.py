"""What a method plugin promises, checked on every run rather than trusted.

- ``count()`` is what the model really trains (head excluded);
- every trainable parameter is connected to the output: those the method added, and those of the
  backbone it unfroze (BitFit's biases) unless the backbone's own forward pass never uses them
  (DINOv2's mask token, trained by full fine-tuning);
- after training, the adapted model's outputs differ from the base model's (an adapter silently
  left out of the forward pass would otherwise score as the base model).

A broken promise fails that run with both sides named; the sweep goes on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ContractError(RuntimeError):
    """A method plugin broke its contract with the harness."""


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def check_count(said: int, adapted: nn.Module) -> None:
    real = sum(p.numel() for p in trainable(adapted))
    if real != said:
        raise ContractError(f"count() said {said:,} trainable parameters, the model trains {real:,}")


class Probe:
    """A few fixed training inputs run through the backbone before the method touches it, through
    the adapted model before training (gradients) and after it (outputs)."""

    def __init__(self, run: Callable[[nn.Module], torch.Tensor], base: nn.Module):
        self.run = run
        self.base_ids = {id(p) for p in base.parameters()}
        with torch.no_grad():
            self.base_output = run(base.eval())
        # a second forward, in grad mode: its output may round differently from the no-grad one above,
        # which check_changed compares with bit for bit
        self.base_used = used_parameters(run, base)

    def check_connected(self, adapted: nn.Module) -> None:
        """Every trainable parameter gets a gradient (a zero-initialised factor may rightly get a
        zero one at step 0, but never none): the method's own, and the backbone's that its forward
        pass uses."""
        checked = [(name, p) for name, p in adapted.named_parameters()
                   if p.requires_grad and (id(p) not in self.base_ids or id(p) in self.base_used)]
        if not checked:
            return
        with torch.random.fork_rng(devices=[]):  # no draw from the generator the training run uses
            output = self.run(adapted.eval())
            if output.requires_grad:  # else nothing trainable reaches the output at all
                output.float().sum().backward()
        loose = [name for name, p in checked if p.grad is None]
        adapted.zero_grad(set_to_none=True)
        if loose:
            raise ContractError(f"adapter not active: {len(loose)} of its {len(checked)} trainable tensors get no "
                                f"gradient (e.g. {loose[0]})")

    def check_changed(self, adapted: nn.Module) -> None:
        with torch.no_grad():
            after = self.run(adapted.eval())
        if torch.equal(after, self.base_output):
            raise ContractError("adapter not active: after training, the model's outputs equal the base model's")


def used_parameters(run: Callable[[nn.Module], torch.Tensor], module: nn.Module) -> set[int]:
    """The ids of the parameters ``module``'s output depends on, read from the autograd graph of one
    forward pass: no backward, so no gradient the size of the model is ever allocated."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            output = run(module.eval())
        used, seen, stack = set(), set(), [output.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if hasattr(node, "variable"):  # a leaf: the parameter itself
                used.add(id(node.variable))
            stack.extend(child for child, _ in node.next_functions)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return used
