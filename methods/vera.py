"""VeRA through peft's own tuner: frozen shared random projections, trained scaling vectors."""

from peft import VeraConfig

from peftbench.method import PeftMethod, default_targets, linear_shapes

MAX_RANK = 1024  # the projections are dense r x d buffers; past this they cost more than they give


class VeRA(PeftMethod):
    name = "vera"
    description = "shared frozen random B A with trained per-layer scaling vectors (peft VeraConfig)"
    defaults = {"lr": 5e-3, "weight_decay": 1e-4, "dropout": 0.0}

    def sizes(self, backbone):
        return ({"r": r} for r in range(1, MAX_RANK + 1))

    def search_space(self, trial):
        return {"dropout": trial.suggest_categorical("dropout", [0.0, 0.1])}

    def count(self, backbone, size):
        # lambda_d (r) and lambda_b (d_out) per adapted layer
        shapes = linear_shapes(backbone.module, default_targets(backbone))
        return sum(size["r"] + d_out for _, d_out in shapes)

    def peft_config(self, backbone, size, hparams) -> VeraConfig:
        return VeraConfig(
            r=size["r"],
            target_modules=default_targets(backbone),
            vera_dropout=hparams.get("dropout", 0.0),
            save_projection=True,
        )
