"""How each kind of task builds its model around the adapted backbone, trains it and scores it."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .train import Classifier, TrainConfig, TrainStats, evaluate, train


@dataclass(frozen=True)
class Score:
    metric: float
    samples_per_s: float
    details: dict = field(default_factory=dict)


class Classify:
    """Adapted encoder plus the linear head every method trains; top-1 accuracy."""

    def build(self, task, backbone, adapted: nn.Module) -> nn.Module:
        return Classifier(adapted, backbone.feature_dim, task.num_classes)

    def head_params(self, model: nn.Module) -> int:
        return sum(p.numel() for p in model.head.parameters())

    def train(self, model, backbone, data, config: TrainConfig, settings: dict, **loop) -> TrainStats:
        return train(model, data, config, **loop)

    def score(self, model, backbone, data, settings: dict) -> Score:
        accuracy, speed = evaluate(model, data)
        return Score(accuracy, speed)


class Choice:
    """A causal LM trained on answer tokens, scored by option log-likelihood or by generation."""

    def build(self, task, backbone, adapted: nn.Module) -> nn.Module:
        return adapted

    def head_params(self, model: nn.Module) -> int:
        return 0

    def train(self, model, backbone, data, config: TrainConfig, settings: dict, **loop) -> TrainStats:
        from .lm import train_lm

        return train_lm(model, backbone.tokenizer, data, config, max_length=settings["max_length"], **loop)

    def score(self, model, backbone, data, settings: dict) -> Score:
        from .lm import evaluate_choices

        mode = settings["eval_mode"]
        result = evaluate_choices(model, backbone.tokenizer, data, mode=mode, max_length=settings["max_length"])
        return Score(result["accuracy"], result["samples_per_s"],
                     {"eval_mode": mode, "parse_failures": result["parse_failures"]})


KINDS = {"classify": Classify(), "choice": Choice()}
