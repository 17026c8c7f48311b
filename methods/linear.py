"""Linear probe: the backbone stays frozen and only the classifier head trains (the floor)."""

from peftbench.method import Method


class Linear(Method):
    name = "linear"
    description = "frozen backbone, trained head only (the floor)"
    knobs = ()
    trains_backbone = False  # the head alone: its learning rate is the shared head_lr
    defaults = {"weight_decay": 1e-4}

    def sizes(self, backbone):
        return [{}]

    def count(self, backbone, size):
        return 0

    def apply(self, backbone, size, hparams):
        return backbone.module.requires_grad_(False)
