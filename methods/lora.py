"""LoRA and DoRA through peft's own LoRA tuner, on the projections the literature adapts."""

from peft import LoraConfig

from peftbench.method import PeftMethod, default_targets, linear_shapes, low_rank_space


class LoRA(PeftMethod):
    name = "lora"
    description = "low-rank updates B A (peft LoraConfig)"
    defaults = {"lr": 1e-3, "weight_decay": 1e-4, "alpha_over_r": 1.0, "dropout": 0.0}
    use_dora = False

    def search_space(self, trial):
        return low_rank_space(trial)

    def count(self, backbone, size):
        shapes = linear_shapes(backbone.module, default_targets(backbone))
        magnitudes = sum(d_out for _, d_out in shapes) if self.use_dora else 0
        return sum((d_in + d_out) * size["r"] for d_in, d_out in shapes) + magnitudes

    def peft_config(self, backbone, size, hparams) -> LoraConfig:
        r = size["r"]
        return LoraConfig(
            r=r,
            lora_alpha=hparams.get("alpha_over_r", 1.0) * r,
            lora_dropout=hparams.get("dropout", 0.0),
            target_modules=default_targets(backbone),
            use_dora=self.use_dora,
        )


class DoRA(LoRA):
    name = "dora"
    description = "weight-decomposed LoRA: magnitude and low-rank direction (peft use_dora)"
    use_dora = True
