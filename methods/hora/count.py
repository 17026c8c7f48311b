"""Closed-form trainable-parameter count of HoRA, used by the budget solver."""

from __future__ import annotations

from dataclasses import dataclass

from peft.tuners.tuners_utils import BaseTunerLayer, check_target_module_exists
from torch import nn

from .config import LORA, HoraConfig


def hora_parameter_count(config: HoraConfig, model: nn.Module) -> dict[str, int]:
    """Trainable parameters HoRA adds to `model`, from the config and the target shapes alone.

    Works on the base model (before `get_peft_model`) or on one already wrapped. Returns
    `seeds` (A seeds, or MH-LoRA's free A), `heads` (per-head B seeds, or MH-LoRA's free B_i),
    `generator` (g_A, g_B and the per-target r x r output projections), `lora` (the plain LoRA of the
    `lora_modules`, outside every attention block) and `total`, the sum of all four.

    Per attention block with input width d_in, head width d_h, adapted roles t (q, k, v) with n_t heads,
    R = number of roles, H query heads and mlp(D) = 2 D m + m + D:

    - seeds: r d_in (shared seeds) or R r d_in (separate seeds, MH-LoRA);
    - heads: H d_h r (shared: one B seed per query head, kv heads reuse their group's) or sum_t n_t d_h r;
    - generator: mlp(r) + G mlp(D_B) + R r^2 (P_A) + P D_P^2 (P_B), with D_B = r or d_h (axis), D_P = D_B
      with proj_axis="generator" else r and, for share="qv" (heads share nothing on the B side), G = H and
      P = sum_t n_t (one g_B and one P_B per head), else G = 1 and P = R; zero for MH-LoRA;
    - lora: r (d_in + d_out) per `lora_modules` Linear (a free A and B, whatever `share` and `seeds` say).
    """
    return count_from_shapes(config, hora_shapes(config, model))


@dataclass(frozen=True)
class HoraShapes:
    """What the count needs of a model: per attention block (d_in, d_h, heads of each adapted role),
    and the summed d_in + d_out of the `lora_modules`. It depends on the targets alone, not on r, the
    generator's width or the variant, so a budget solver finds it once and counts thousands of sizes."""

    blocks: tuple[tuple[int, int, tuple[int, ...]], ...]
    lora_width: int


def hora_shapes(config: HoraConfig, model: nn.Module) -> HoraShapes:
    blocks: dict[str, tuple[int, int, list[int]]] = {}  # block -> (d_in, d_h, heads of each adapted role)
    lora_width = 0
    for name, module in model.named_modules():
        if ".base_layer" in name or not check_target_module_exists(config, name):
            continue
        base = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
        if not isinstance(base, nn.Linear):
            continue
        head_dim, layout = config.layout(name, base.out_features)
        if LORA in layout:
            lora_width += base.in_features + base.out_features
            continue
        d_in, d_h, roles = blocks.setdefault(name.rpartition(".")[0], (base.in_features, head_dim, []))
        roles.extend(n_heads for _, _, n_heads in layout.values())
    return HoraShapes(tuple((d_in, d_h, tuple(roles)) for d_in, d_h, roles in blocks.values()), lora_width)


def count_from_shapes(config, shapes: HoraShapes) -> dict[str, int]:
    """`hora_parameter_count` on a model with these shapes; `config` needs only r, hidden,
    num_attention_heads, share, seeds and axis (and proj_axis, "rank" when absent)."""
    r, m, heads = config.r, config.hidden, config.num_attention_heads
    seeds = per_head = generator = 0
    for d_in, d_h, roles in shapes.blocks:
        if config.share == "none" or config.seeds == "separate":
            seeds += len(roles) * r * d_in
            per_head += sum(roles) * d_h * r
        else:
            seeds += r * d_in
            per_head += heads * d_h * r
        if config.share != "none":
            code_dim = r if config.axis == "rank" else d_h
            proj_dim = code_dim if getattr(config, "proj_axis", "rank") == "generator" else r
            # share="qv": one g_B per query head and one P_B per head of each target
            groups, projections_B = (heads, sum(roles)) if config.share == "qv" else (1, len(roles))
            generator += (
                _mlp(r, m) + groups * _mlp(code_dim, m) + len(roles) * r * r + projections_B * proj_dim * proj_dim
            )
    lora = r * shapes.lora_width
    total = seeds + generator + per_head + lora
    return {"seeds": seeds, "generator": generator, "heads": per_head, "lora": lora, "total": total}


def _mlp(dim: int, hidden: int) -> int:
    return 2 * dim * hidden + hidden + dim
