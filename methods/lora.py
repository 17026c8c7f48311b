"""LoRA and DoRA through peft's own LoRA tuner, on the recipe's target modules."""

from peft import LoraConfig

from peftbench.method import (PeftMethod, linear_shapes, low_rank_space, per_module_count, per_module_sizes,
                              target_names, widened)


class LoRA(PeftMethod):
    name = "lora"
    description = "low-rank updates B A (peft LoraConfig)"
    defaults = {"lr": 1e-3, "weight_decay": 1e-4, "alpha_over_r": 1.0, "dropout": 0.0}
    use_dora = False
    fine_knobs = ("plus1",)

    def search_space(self, trial):
        return low_rank_space(trial)

    def sizes(self, backbone):
        # rank r everywhere, r + 1 on the first `plus1` targets (peft's rank_pattern)
        return per_module_sizes(backbone, self._costs(backbone), backbone.layout.hidden_size)

    def count(self, backbone, size):
        shapes = linear_shapes(backbone.module, backbone.target_modules)
        magnitudes = sum(d_out for _, d_out in shapes) if self.use_dora else 0
        return per_module_count(self._costs(backbone), size) + magnitudes

    @staticmethod
    def _costs(backbone) -> list[int]:
        return [d_in + d_out for d_in, d_out in linear_shapes(backbone.module, backbone.target_modules)]

    def peft_config(self, backbone, size, hparams) -> LoraConfig:
        r, alpha_over_r = size["r"], hparams.get("alpha_over_r", 1.0)
        ranks = widened(target_names(backbone.module, backbone.target_modules), size)
        return LoraConfig(
            r=r,
            lora_alpha=alpha_over_r * r,
            # the widened modules keep the same alpha / r, so every module's update has one scale
            rank_pattern=ranks,
            alpha_pattern={name: alpha_over_r * rank for name, rank in ranks.items()},
            lora_dropout=hparams.get("dropout", 0.0),
            target_modules=backbone.target_modules,
            use_dora=self.use_dora,
        )


class DoRA(LoRA):
    name = "dora"
    description = "weight-decomposed LoRA: magnitude and low-rank direction (peft use_dora)"
    use_dora = True
