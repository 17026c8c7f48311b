"""Full fine-tuning: every backbone parameter trains (the reference point above all PEFT)."""

from peftbench.method import Method


class Full(Method):
    name = "full"
    description = "every backbone parameter trainable (the ceiling)"
    knobs = ()
    mergeable = False
    defaults = {"lr": 1e-4, "weight_decay": 1e-4}

    def sizes(self, backbone):
        return [{}]

    def count(self, backbone, size):
        return backbone.total_params

    def apply(self, backbone, size, hparams):
        return backbone.module.requires_grad_(True)
