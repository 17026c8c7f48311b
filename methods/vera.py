"""VeRA through peft's own tuner: frozen shared random projections, trained scaling vectors."""

import torch.nn.functional as F
from peft import VeraConfig
from peft.tuners.vera.layer import Linear as PeftVeraLinear

from peftbench.method import Ladder, PeftMethod, linear_shapes


class VeRA(PeftMethod):
    name = "vera"
    description = "shared frozen random B A with trained per-layer scaling vectors (peft VeraConfig)"
    defaults = {"lr": 5e-3, "weight_decay": 1e-4, "dropout": 0.0}

    def sizes(self, backbone):
        return Ladder(max_rank(backbone), lambda i: {"r": i + 1})

    def search_space(self, trial):
        return {"dropout": trial.suggest_categorical("dropout", [0.0, 0.1])}

    def count(self, backbone, size):
        # lambda_d (r) and lambda_b (d_out) per adapted layer
        shapes = linear_shapes(backbone.module, backbone.target_modules)
        return sum(size["r"] + d_out for _, d_out in shapes)

    def apply(self, backbone, size, hparams):
        model = super().apply(backbone, size, hparams)
        for module in model.modules():
            if type(module) is PeftVeraLinear:
                module.__class__ = DenseUpdateLinear  # same state and methods, a cheaper forward
        return model

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


def dense_update_pays(tokens: int, rank: int, d_in: int, d_out: int) -> bool:
    """Whether forming the update as one d_out x d_in matrix costs fewer multiply-adds than peft's
    two projections through the rank. At an equal budget VeRA's rank is in the thousands (r=5760
    against LoRA r=8 on dinov2-s), and its projections then cost more than the backbone itself."""
    return tokens * rank * (d_in + d_out) > rank * d_in * d_out + tokens * d_in * d_out


class DenseUpdateLinear(PeftVeraLinear):
    """peft's VeRA Linear; one active, unmerged adapter applies its update as the dense matrix
    ``lambda_b B lambda_d A`` where that is cheaper: the same function and gradients."""

    def dense_update(self, adapter: str):
        """``diag(lambda_b) (B (diag(lambda_d) A))`` as d_out x d_in. In this order backward needs one
        product through the rank (for lambda_d); peft's merge order, ``(lambda_b B)(lambda_d A)``,
        needs two, since then both factors carry a trained vector."""
        lambda_d, lambda_b = self.vera_lambda_d[adapter], self.vera_lambda_b[adapter]
        a = self.vera_A[adapter][:, : self.in_features].to(lambda_d.device)
        b = self.vera_B[adapter][: self.out_features, :].to(lambda_d.device)
        return lambda_b[:, None] * (b @ (lambda_d[:, None] * a))

    def forward(self, x, *args, **kwargs):
        adapters = [a for a in self.active_adapters if a in self.vera_lambda_d]
        if self.disable_adapters or self.merged or len(adapters) != 1 or getattr(self, "quantization_backend", None):
            return super().forward(x, *args, **kwargs)
        adapter = adapters[0]
        rank = self.vera_lambda_d[adapter].numel()
        if not dense_update_pays(x.numel() // self.in_features, rank, self.in_features, self.out_features):
            return super().forward(x, *args, **kwargs)
        previous_dtype = x.dtype
        result = self.base_layer(x, *args, **kwargs)
        x = x.to(self.vera_lambda_d[adapter].dtype)
        update = F.linear(self.vera_dropout[adapter](x), self.dense_update(adapter))
        return (result + update).to(result.dtype).to(previous_dtype)
