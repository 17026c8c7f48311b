"""How each kind of task builds its model around the adapted backbone, trains it and scores it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from .compute import device
from .features import frozen_features
from .loading import loader, shuffled
from .recipe import Recipe
from .records import Kind
from .train import Classifier, TrainConfig, TrainStats, evaluate, fit, train


@dataclass(frozen=True)
class Score:
    metric: float
    samples_per_s: float | None
    details: dict = field(default_factory=dict)
    #: per example, in order: right or wrong (bool), or the squared error (float)
    outcomes: np.ndarray | None = None


PROBE_EXAMPLES = 4


def _first_inputs(data, dev: torch.device) -> torch.Tensor:
    return torch.stack([data[i][0] for i in range(min(PROBE_EXAMPLES, len(data)))]).to(dev)


class Classify:
    """Adapted encoder plus the linear head every method trains; top-1 accuracy."""

    has_head = True

    def probe(self, backbone, data, recipe: Recipe):
        """What the adapted backbone computes on a few training inputs (peftbench.contracts)."""
        x = _first_inputs(data, device())
        return lambda module: module(x)

    def build(self, task, backbone, adapted: nn.Module) -> nn.Module:
        return Classifier(adapted, backbone.feature_dim, task.num_classes)

    def head_params(self, model: nn.Module) -> int:
        return sum(p.numel() for p in model.head.parameters())

    def train(self, model, backbone, data, config: TrainConfig, recipe: Recipe, frozen: bool = False,
              **loop) -> TrainStats:
        """``frozen``: the backbone is the pretrained one, untouched, so the head trains on its
        features, computed once (the time to compute them counts as training)."""
        if not frozen:
            return train(model, data, config, **loop)
        features, seconds = frozen_features(model.encoder, backbone.module, data)
        stats = train(Classifier.on_features(model.head), features, config, **loop)
        total = stats.seconds + seconds
        return replace(stats, seconds=total, samples_per_s=stats.samples_per_s * stats.seconds / total)

    def score(self, model, backbone, data, recipe: Recipe, frozen: bool = False) -> Score:
        """``frozen``: scored on the features of a frozen backbone; no throughput to report then."""
        if frozen:
            features, _ = frozen_features(model.encoder, backbone.module, data)
            accuracy, _, correct = evaluate(Classifier.on_features(model.head), features)
            return Score(accuracy, None, outcomes=correct.numpy())
        accuracy, speed, correct = evaluate(model, data)
        return Score(accuracy, speed, outcomes=correct.numpy())


class Choice:
    """A causal LM trained on answer tokens, scored by option log-likelihood or by generation."""

    has_head = False

    def probe(self, backbone, data, recipe: Recipe):
        from .lm import encode_batch

        examples = [data[i] for i in range(min(2, len(data)))]
        ids, mask = (t.to(device()) for t in encode_batch(backbone.tokenizer, examples, recipe.max_length))
        return lambda module: module(input_ids=ids, attention_mask=mask).logits

    def build(self, task, backbone, adapted: nn.Module) -> nn.Module:
        return adapted

    def head_params(self, model: nn.Module) -> int:
        return 0

    def train(self, model, backbone, data, config: TrainConfig, recipe: Recipe, frozen: bool = False,
              **loop) -> TrainStats:
        from .lm import train_lm

        return train_lm(model, backbone.tokenizer, data, config, max_length=recipe.max_length, **loop)

    def score(self, model, backbone, data, recipe: Recipe, frozen: bool = False) -> Score:
        from .lm import evaluate_choices

        mode = recipe.eval_mode
        result = evaluate_choices(model, backbone.tokenizer, data, mode=mode, max_length=recipe.max_length)
        return Score(result["accuracy"], result["samples_per_s"],
                     {"eval_mode": mode, "parse_failures": result["parse_failures"]}, np.array(result["correct"]))


def _squared_error(model: nn.Module, batch: tuple) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x).float(), y)


class Regress:
    """The adapted model's own output is the prediction (teacher-student: no head); mean squared error."""

    has_head = False

    def probe(self, backbone, data, recipe: Recipe):
        x = _first_inputs(data, device())
        return lambda module: module(x)

    def build(self, task, backbone, adapted: nn.Module) -> nn.Module:
        return adapted

    def head_params(self, model: nn.Module) -> int:
        return 0

    def train(self, model, backbone, data, config: TrainConfig, recipe: Recipe, frozen: bool = False,
              **loop) -> TrainStats:
        if not any(p.requires_grad for p in model.parameters()):  # linear: nothing to fit, the frozen floor
            return self._untrained(model, config, loop.get("on_epoch"))
        return fit(model, shuffled(data, config.batch_size, config.seed, config.epoch_samples), _squared_error, config,
                   **loop)

    @staticmethod
    def _untrained(model, config: TrainConfig, on_epoch) -> TrainStats:
        model.to(device()).eval()
        for epoch in range(config.epochs if on_epoch is not None else 0):
            on_epoch(epoch)
        weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        return TrainStats(0.0, 0.0, weights, float("nan"))

    @torch.no_grad()
    def score(self, model, backbone, data, recipe: Recipe, frozen: bool = False, batch_size: int = 512) -> Score:
        dev = device()
        model.to(dev).eval()
        errors = []  # per example: the mean squared error over its outputs
        start = time.perf_counter()
        for x, y in loader(data, batch_size):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            errors.append((model(x).float() - y).pow(2).flatten(1).mean(1).cpu())
        errors = torch.cat(errors)
        return Score(errors.mean().item(), len(errors) / (time.perf_counter() - start), outcomes=errors.numpy())


KINDS = {Kind.CLASSIFY: Classify(), Kind.CHOICE: Choice(), Kind.REGRESS: Regress()}
