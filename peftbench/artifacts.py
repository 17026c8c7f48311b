"""What a final run leaves besides its record: its trained tensors, as safetensors.

safetensors holds tensors and string metadata only, so loading a shared file runs no code
(unlike a pickle)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import nn


def save_trained(model: nn.Module, path: Path, metadata: dict) -> str:
    """The tensors the run trained (adapter and head), named as in the model."""
    tensors = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={key: str(value) for key, value in metadata.items()})
    return str(path)
