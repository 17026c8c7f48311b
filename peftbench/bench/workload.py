"""The batches a benchmark times, and how one backbone turns them into a loss and an output.

Random inputs of the right shape: speed and memory do not depend on what the pixels or tokens
are, and no data set has to be loaded for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

NUM_CLASSES = 10  # head width of the image workload; any value times the same


@dataclass
class Workload:
    batches: list[tuple]
    batch_size: int
    unit: str  # what one sample is: "images" or "sequences"
    loss: Callable[[nn.Module, tuple], torch.Tensor]
    infer: Callable[[nn.Module, tuple], torch.Tensor]
    wrap: Callable[[nn.Module], nn.Module]  # adapted backbone module -> the model that trains


def image_workload(backbone, batch_size: int, n_batches: int = 2, seed: int = 0) -> Workload:
    import torch

    from ..train import Classifier, _classification_loss

    g = torch.Generator().manual_seed(seed)
    size = backbone.image_size
    batches = [(torch.randn(batch_size, 3, size, size, generator=g),
                torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)) for _ in range(n_batches)]

    def wrap(module):
        torch.manual_seed(seed)  # the same head for every method
        return Classifier(module, backbone.feature_dim, NUM_CLASSES)

    return Workload(batches, batch_size, "images", _classification_loss, lambda m, b: m(b[0]), wrap)


def text_workload(backbone, batch_size: int, seq_len: int, n_batches: int = 2, seed: int = 0) -> Workload:
    import torch

    from ..lm import IGNORE, _response_loss

    g = torch.Generator().manual_seed(seed)
    vocab = backbone.module.config.vocab_size
    batches = []
    for _ in range(n_batches):
        ids = torch.randint(0, vocab, (batch_size, seq_len), generator=g)
        labels = ids.clone()
        labels[:, : seq_len // 2] = IGNORE  # the loss on the response half, as training does
        batches.append((ids, torch.ones_like(ids), labels))
    return Workload(batches, batch_size, "sequences", lambda m, b: _response_loss(m, *b),
                    lambda m, b: m(input_ids=b[0], attention_mask=b[1]).logits, lambda m: m)
