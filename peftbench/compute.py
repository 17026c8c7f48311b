"""Where and in what precision this process computes.

The device is a worker's (one GPU per worker: ``--device``, else ``LOCAL_RANK``, else the first
visible GPU, else the CPU); the precision is a run's (the recipe's ``precision``). ``auto`` means
bf16 autocast on GPUs that compute bf16 natively, fp32 elsewhere (see resolve_precision).
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext

import torch

from .errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16")
_device: torch.device | None = None
_precision = "fp32"


def pick_device(spec: str | None = None, gpus: int | None = None, local_rank: str | None = None) -> torch.device:
    """``spec`` as given (``cpu``, ``cuda``, ``cuda:1``); else the GPU ``LOCAL_RANK`` names (as
    torchrun sets it), else the first GPU, else the CPU."""
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if spec not in (None, "auto"):
        try:
            chosen = torch.device(spec)
        except RuntimeError:
            raise UsageError(f"--device '{spec}' is not a device (cpu, cuda, cuda:N)") from None
        if chosen.type == "cuda" and (gpus == 0 or (chosen.index or 0) >= gpus):
            raise UsageError(f"--device {spec}: this machine has {gpus} GPU(s)")
        return chosen
    if gpus == 0:
        return torch.device("cpu")
    rank = int(local_rank if local_rank is not None else os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", rank % gpus)


def set_device(spec: str | None = None) -> torch.device:
    global _device
    _device = pick_device(spec)
    return _device


def device() -> torch.device:
    return _device if _device is not None else set_device()


def native_bf16(dev: torch.device) -> bool:
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return dev.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(precision: str, dev: torch.device | None = None) -> str:
    """``auto`` -> ``bf16`` on a GPU that computes it natively, else ``fp32``.

    Not on CPUs, even with AVX-512 BF16 and AMX: measured on such a 2-core CPU, autocast's casts
    cost about what bf16 matmuls save on a ViT-S at 56 px (a LoRA step 1.04x fp32's in `bench`;
    the quick suite 474 s in bf16 against 378 s in fp32); ``--precision bf16`` still asks for it."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        dev = dev or device()
        return "bf16" if dev.type == "cuda" and native_bf16(dev) else "fp32"
    return precision


@contextmanager
def precision(value: str):
    """Run the enclosed training and scoring in ``value`` (fp32 or bf16)."""
    global _precision
    before, _precision = _precision, resolve_precision(value)
    try:
        yield
    finally:
        _precision = before


def current_precision() -> str:
    return _precision


def autocast(dev: torch.device | None = None):
    """bf16 autocast when the current precision is bf16; weights and optimizer state stay fp32."""
    dev = dev or device()
    return torch.autocast(dev.type, dtype=torch.bfloat16) if _precision == "bf16" else nullcontext()
