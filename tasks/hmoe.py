"""``hmoe``: the teacher-student task where HoRA's sample-efficiency claim can be tested.

The student is the frozen one-layer attention model ``hmoe-attention``. The teacher is the same
layer with true low-rank updates of its q and v projections, ``dW = B A`` (rank ``RANK``; A shared
by the heads as in LoRA, head i owning the rows of B_i):

- ``shared``: every head's (B_i^Q, B_i^V) is one shared non-linear map of a small per-head code,
  ``F(c_i) = W2 tanh(W1 c_i + b1)``; all heads' updates then lie in the ``MAP_WIDTH``-dimensional
  column space of W2, fewer dimensions than there are heads: the heads share structure, as a
  hierarchical mixture of experts whose experts come from one generator.
- ``independent`` (the control): every head's update drawn independently, at the same scale.

Inputs are Gaussian token sequences; training and validation targets are the teacher's output
plus Gaussian noise; test targets are the noiseless output, so the test MSE is the excess error
and keeps falling with more samples instead of flattening at the noise level. The update's scale
makes the frozen student's test MSE about 1 on both tasks. Train+val holds 2^14 examples, so
fractions down to 2^-8 (64 examples) still train on something.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
from torch.utils.data import TensorDataset

from peftbench.backbones.synthetic import HEADS, WIDTH, attention_model
from peftbench.task import Splits, Suite, Task

TOKENS = 8
RANK, CODE_DIM, MAP_WIDTH = 2, 2, 3
TRAIN, VAL, TEST = 2**14 - 2**10, 2**10, 2**12
NOISE = 1.0
UPDATE_SEED, DATA_SEED = 1, 2
STRUCTURES = ("shared", "independent")


def head_updates(structure: str, heads: int = HEADS, head_dim: int = WIDTH // HEADS, rank: int = RANK,
                 seed: int = UPDATE_SEED) -> torch.Tensor:
    """Each head's (B_i^Q, B_i^V) flattened: [heads, 2 * head_dim * rank], unit RMS."""
    generator = torch.Generator().manual_seed(seed)
    size = 2 * head_dim * rank
    if structure == "shared":
        codes = torch.randn(heads, CODE_DIM, generator=generator)
        w1 = torch.randn(MAP_WIDTH, CODE_DIM, generator=generator)
        b1 = torch.randn(MAP_WIDTH, generator=generator)
        w2 = torch.randn(size, MAP_WIDTH, generator=generator)
        updates = torch.tanh(codes @ w1.T + b1) @ w2.T
    elif structure == "independent":
        updates = torch.randn(heads, size, generator=generator)
    else:
        raise ValueError(f"unknown teacher structure {structure!r} (expected one of {STRUCTURES})")
    return updates / updates.pow(2).mean().sqrt()


def weight_updates(structure: str, width: int = WIDTH, heads: int = HEADS, rank: int = RANK,
                   seed: int = UPDATE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """dW_Q = B^Q A^Q and dW_V = B^V A^V, [width, width] each, before scaling."""
    head_dim = width // heads
    per_head = head_updates(structure, heads, head_dim, rank, seed).view(heads, 2, head_dim, rank)
    # A is drawn from its own stream: both teachers get the same A and differ only in B
    generator = torch.Generator().manual_seed(seed + 1000)
    a_q, a_v = (torch.randn(rank, width, generator=generator) / width ** 0.5 for _ in range(2))
    b_q, b_v = per_head[:, 0].reshape(width, rank), per_head[:, 1].reshape(width, rank)
    return b_q @ a_q, b_v @ a_v


def teacher(structure: str, probe: torch.Tensor) -> torch.nn.Module:
    """The frozen student plus the scaled updates; the scale puts the student's MSE on ``probe`` at 1."""
    student = attention_model()
    d_q, d_v = weight_updates(structure)
    with torch.no_grad():
        base = student(probe)
        scale = 1.0
        for _ in range(4):  # the output is nearly linear in a small update: a few rescalings converge
            model = copy.deepcopy(student)
            model.layers[0].q_proj.weight += scale * d_q
            model.layers[0].v_proj.weight += scale * d_v
            scale /= (model(probe) - base).pow(2).mean().sqrt().item()
        model = copy.deepcopy(student)
        model.layers[0].q_proj.weight += scale * d_q
        model.layers[0].v_proj.weight += scale * d_v
    return model.eval()


def load_hmoe(structure: str, image_size=None, mean=None, std=None, data_root=None) -> Splits:
    generator = torch.Generator().manual_seed(DATA_SEED)
    x_trainval = torch.randn(TRAIN + VAL, TOKENS, WIDTH, generator=generator)
    x_test = torch.randn(TEST, TOKENS, WIDTH, generator=generator)
    noise = NOISE * torch.randn(TRAIN + VAL, TOKENS, WIDTH, generator=generator)
    model = teacher(structure, x_test[:1024])
    with torch.no_grad():
        y_trainval = model(x_trainval) + noise
        y_test = model(x_test)
    trainval = TensorDataset(x_trainval, y_trainval)
    return Splits(train=TensorDataset(x_trainval[:TRAIN], y_trainval[:TRAIN]),
                  val=TensorDataset(x_trainval[TRAIN:], y_trainval[TRAIN:]),
                  trainval=trainval, test=TensorDataset(x_test, y_test))


def hmoe_task(structure: str) -> Task:
    # num_classes is unused: the student's own output is the prediction (no head)
    return Task("hmoe", structure, "hmoe", "tokens", 0, partial(load_hmoe, structure),
                metric="mse", higher_is_better=False, kind="regress")


HMOE = Suite(
    name="hmoe",
    description="synthetic teacher-student attention: heads with shared vs independent low-rank updates (MSE)",
    tasks=tuple(hmoe_task(structure) for structure in STRUCTURES),
    # Every epoch draws epoch_samples examples (fresh permutations of whatever the fraction left),
    # so every fraction gets the same 1,024 steps, enough to converge: the error then measures
    # the samples, not the optimisation. Without trials both methods run at their defaults.
    # Tuned, every trial trains 3 seeds and is scored by their mean val MSE: one seed's val MSE
    # varies between seeds by more than the margins between trials (docs/protocol.md).
    recipe={"backbone": "hmoe-attention", "image_size": None, "epochs": 4, "batch_size": 64,
            "epoch_samples": 2**14, "trials": 0, "seeds": 3, "tune_seeds": 3},
)
