"""HoRA as a peftbench method: the tuner in this package, configured from the backbone's layout."""

from peftbench.errors import UsageError
from peftbench.method import PeftMethod, low_rank_space

from . import HoraConfig, hora_parameter_count


class HoRA(PeftMethod):
    name = "hora"
    description = "cross-head low-rank adaptation: per-layer hypernetworks generate per-head B (HoRA)"
    # HoRA trains the generator through seeds that start small: it wants a larger step than LoRA.
    defaults = {"lr": 3e-3, "weight_decay": 1e-4, "alpha_over_r": 1.0, "dropout": 0.0,
                "hidden": 32, "activation": "tanh", "share": "heads", "seeds": "shared", "axis": "rank"}

    def search_space(self, trial):
        return low_rank_space(trial)  # as LoRA's: the generator's shape is part of the budgeted size

    def peft_config(self, backbone, size, hparams) -> HoraConfig:
        layout = backbone.layout
        roles = ["q", "k", "v"] if backbone.family == "llama" else ["q", "v"]
        names = {"q": layout.q, "k": layout.k, "v": layout.v}
        r = size["r"]
        options = {k: hparams.get(k, self.defaults[k]) for k in ("hidden", "activation", "share", "seeds", "axis")}
        return HoraConfig(
            r=r,
            alpha=hparams.get("alpha_over_r", 1.0) * r,
            dropout=hparams.get("dropout", 0.0),
            num_attention_heads=layout.num_heads,
            num_key_value_heads=layout.num_kv_heads,
            head_dim=layout.head_dim,
            targets=roles,
            role_names={names[role].rsplit(".", 1)[-1]: role for role in ("q", "k", "v")},
            target_modules=[names[role] for role in roles],
            **options,
        )

    def check(self, backbone):
        layout = backbone.layout
        if layout.num_heads % layout.num_kv_heads or layout.head_dim * layout.num_heads < 1:
            raise UsageError(f"hora cannot adapt {backbone.name}: {layout.num_heads} query heads do not "
                             f"split evenly over {layout.num_kv_heads} key/value heads")

    def count(self, backbone, size):
        return hora_parameter_count(self.peft_config(backbone, size, self.defaults), backbone.module)["total"]
