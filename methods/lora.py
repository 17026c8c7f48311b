"""LoRA through peft's own tuner, on the projections the literature adapts."""

from peft import LoraConfig, get_peft_model

from peftbench.method import Method, default_targets, linear_shapes


class LoRA(Method):
    name = "lora"
    description = "low-rank updates B A on q and v (peft LoraConfig)"
    defaults = {"lr": 1e-3, "weight_decay": 1e-4, "alpha_over_r": 1.0, "dropout": 0.0}

    def count(self, backbone, size):
        shapes = linear_shapes(backbone.module, default_targets(backbone))
        return sum((d_in + d_out) * size["r"] for d_in, d_out in shapes)

    def peft_config(self, backbone, size, hparams) -> LoraConfig:
        r = size["r"]
        return LoraConfig(
            r=r,
            lora_alpha=hparams.get("alpha_over_r", 1.0) * r,
            lora_dropout=hparams.get("dropout", 0.0),
            target_modules=default_targets(backbone),
        )

    def apply(self, backbone, size, hparams):
        return get_peft_model(backbone.module, self.peft_config(backbone, size, hparams))
