"""Per-example test outcomes, stored compactly with each final run, so that intervals and paired
tests need no rerun: correct/incorrect as packed bits, squared errors as float32, base64 text."""

from __future__ import annotations

import base64

import numpy as np


def encode(values) -> str:
    values = np.asarray(values)
    if values.dtype == bool:
        return f"bits:{len(values)}:{base64.b64encode(np.packbits(values)).decode()}"
    return f"f32:{base64.b64encode(values.astype('<f4').tobytes()).decode()}"


def decode(text: str) -> np.ndarray:
    """Correct flags (bool) or squared errors (float32), one per test example, in the split's order."""
    kind, _, rest = text.partition(":")
    if kind == "bits":
        count, _, data = rest.partition(":")
        return np.unpackbits(np.frombuffer(base64.b64decode(data), dtype=np.uint8))[: int(count)].astype(bool)
    if kind == "f32":
        return np.frombuffer(base64.b64decode(rest), dtype="<f4").copy()
    raise ValueError(f"unknown outcome encoding '{kind}'")
