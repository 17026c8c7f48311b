"""VeRA through peft's own tuner: frozen shared random projections, trained scaling vectors."""

from peft import VeraConfig

from peftbench.method import PeftMethod, linear_shapes


class VeRA(PeftMethod):
    name = "vera"
    description = "shared frozen random B A with trained per-layer scaling vectors (peft VeraConfig)"
    defaults = {"lr": 5e-3, "weight_decay": 1e-4, "dropout": 0.0}

    def sizes(self, backbone):
        return ({"r": r} for r in range(1, max_rank(backbone) + 1))

    def search_space(self, trial):
        return {"dropout": trial.suggest_categorical("dropout", [0.0, 0.1])}

    def count(self, backbone, size):
        # lambda_d (r) and lambda_b (d_out) per adapted layer
        shapes = linear_shapes(backbone.module, backbone.target_modules)
        return sum(size["r"] + d_out for _, d_out in shapes)

    def peft_config(self, backbone, size, hparams) -> VeraConfig:
        return VeraConfig(
            r=size["r"],
            target_modules=backbone.target_modules,
            vera_dropout=hparams.get("dropout", 0.0),
            save_projection=True,
        )


#: values the frozen projections may always hold (64 MB in fp32), however small the backbone
PROJECTION_FLOOR = 2**24


def max_rank(backbone) -> int:
    """VeRA's count grows by one parameter per rank and layer, so it reaches a budget only at ranks
    far above LoRA's. Its rank rises as far as memory allows: the frozen projections (r x largest
    input, largest output x r) may hold as many values as the backbone itself, or 64 MB."""
    shapes = linear_shapes(backbone.module, backbone.target_modules)
    widest = max(d_in for d_in, _ in shapes) + max(d_out for _, d_out in shapes)
    return max(backbone.total_params, PROJECTION_FLOOR) // widest
