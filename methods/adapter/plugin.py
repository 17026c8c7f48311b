"""The bottleneck adapter as a peftbench method (Houlsby placement by default).

Adapters sit after the attention and MLP sublayers rather than inside projections, so the
recipe's ``targets`` do not apply to them: their placement is the method itself.
"""

from peftbench.method import PeftMethod, linear_shapes, per_module_count, per_module_sizes, target_names, widened

from . import BottleneckConfig, bottleneck_targets


class BottleneckAdapter(PeftMethod):
    name = "adapter"
    description = "bottleneck adapters after attention and MLP (Houlsby; style=pfeiffer: MLP only)"
    mergeable = False
    fine_knobs = ("plus1",)
    options = {"style": ("houlsby", "pfeiffer")}
    defaults = {"lr": 1e-3, "weight_decay": 1e-4, "style": "houlsby"}

    def targets(self, backbone, hparams):
        layout = backbone.layout
        return bottleneck_targets(hparams.get("style", "houlsby"), layout.out, layout.mlp_down)

    def sizes(self, backbone):
        # width r everywhere, r + 1 in the first `plus1` adapters (the config's rank_pattern)
        return per_module_sizes(backbone, self._costs(backbone), backbone.layout.hidden_size)

    def count(self, backbone, size):
        # each adapter: down d -> w and up w -> d, both with bias: (2 d + 1) w + d
        outputs = sum(d_out for _, d_out in linear_shapes(backbone.module, self.targets(backbone, self.defaults)))
        return per_module_count(self._costs(backbone), size) + outputs

    def _costs(self, backbone) -> list[int]:
        return [2 * d_out + 1 for _, d_out in linear_shapes(backbone.module, self.targets(backbone, self.defaults))]

    def peft_config(self, backbone, size, hparams) -> BottleneckConfig:
        style = hparams.get("style", "houlsby")
        targets = self.targets(backbone, hparams)
        return BottleneckConfig(r=size["r"], style=style, target_modules=targets,
                                rank_pattern=widened(target_names(backbone.module, targets), size))
