"""A suite's recipe (backbone, image size, epochs, trials, ...) with the command line's overrides,
validated once: an unknown setting or a bad value is a clear error naming the suite."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .errors import UsageError, did_you_mean

EVAL_MODES = ("loglik", "text", "generate")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Recipe:
    backbone: str = "dinov2-s"
    image_size: int | None = 56
    epochs: int = 5
    batch_size: int = 32
    #: caps for small machines: the first N examples of train (and train+val), of val and test
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    max_length: int = 256  # language tasks: tokens per example
    eval_mode: str = "loglik"  # language tasks: how answers are scored
    trials: int = 10  # Optuna trials per task and method; 0 runs the methods' defaults
    seeds: int = 3  # final runs per task and method
    #: seeds per tuning trial, whose val scores' mean is the trial's: more than 1 where the val
    #: score's seed-to-seed noise exceeds the margins between trials (hmoe)
    tune_seeds: int = 1
    targets: tuple[str, ...] | None = None  # the modules every method adapts; None: the backbone family's
    epoch_samples: int | None = None  # draw at least this many examples per epoch (small fractions)
    precision: str = "auto"  # fp32, bf16 autocast, or auto (bf16 where the hardware has it); recorded resolved
    overrides: tuple[str, ...] = ()  # the settings the command line changed

    @classmethod
    def build(cls, suite: str, recipe: dict, overrides: dict) -> Recipe:
        """The suite's recipe over the defaults, then the overrides (None: not given)."""
        known = {f.name for f in fields(cls)} - {"overrides"}
        for key in recipe:
            if key not in known:
                raise UsageError(f"suite '{suite}': unknown recipe setting '{key}'{did_you_mean(key, sorted(known))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        values = {**recipe, **given}
        if values.get("targets") is not None:
            values["targets"] = tuple(values["targets"])
        recipe_ = cls(**values, overrides=tuple(sorted(given)))
        recipe_.check(suite)
        return recipe_

    def check(self, suite: str) -> None:
        def bad(name: str, why: str) -> UsageError:
            return UsageError(f"suite '{suite}': {name} {getattr(self, name)!r} {why}")

        for name in ("epochs", "batch_size", "max_length", "seeds", "tune_seeds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "must be a positive whole number")
        for name in ("image_size", "max_train_examples", "max_eval_examples", "epoch_samples"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise bad(name, "must be a positive whole number or None")
        if not isinstance(self.trials, int) or isinstance(self.trials, bool) or self.trials < 0:
            raise bad("trials", "must be zero or more")
        if self.eval_mode not in EVAL_MODES:
            raise bad("eval_mode", f"is not one of {', '.join(EVAL_MODES)}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"is not one of {', '.join(PRECISIONS)}")
        if not isinstance(self.backbone, str) or not self.backbone:
            raise bad("backbone", "must be a backbone name")

    def resolved(self, roles: tuple[str, ...], precision: str) -> Recipe:
        """As it runs: the backbone's target roles and the precision ``auto`` chose."""
        return replace(self, targets=tuple(roles), precision=precision)

    def settings(self) -> dict:
        """As records and study names keep it: plain JSON values, with the tuning protocol they
        ran under (``tuning.PROTOCOL``; records without it ran under protocol 1)."""
        from .tuning import PROTOCOL  # optuna is heavy: imported where settings are written

        out = asdict(self)
        out["targets"] = list(self.targets) if self.targets is not None else None
        out["overrides"] = list(self.overrides)
        out["protocol"] = PROTOCOL
        return out
