"""The bottleneck adapter as a peftbench method (Houlsby placement by default)."""

from peftbench.method import PeftMethod, linear_shapes

from . import BottleneckConfig, bottleneck_targets


class BottleneckAdapter(PeftMethod):
    name = "adapter"
    description = "bottleneck adapters after attention and MLP (Houlsby; style=pfeiffer: MLP only)"
    mergeable = False
    defaults = {"lr": 1e-3, "weight_decay": 1e-4, "style": "houlsby"}

    def targets(self, backbone, hparams):
        layout = backbone.layout
        return bottleneck_targets(hparams.get("style", "houlsby"), layout.out, layout.mlp_down)

    def count(self, backbone, size):
        shapes = linear_shapes(backbone.module, self.targets(backbone, self.defaults))
        return sum(2 * d_out * size["r"] + size["r"] + d_out for _, d_out in shapes)

    def peft_config(self, backbone, size, hparams) -> BottleneckConfig:
        style = hparams.get("style", "houlsby")
        return BottleneckConfig(r=size["r"], style=style, target_modules=self.targets(backbone, hparams))
