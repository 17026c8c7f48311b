"""What peft does not say about its tuners: each one's size knob, the options we fix, what it adapts.

peft's registry lists the tuner types and their configs; this table adds, per type, the config
field that sizes the tuner and the values it may take, in increasing trainable count, so the
budget solver can bisect it. A tuner type missing here is still listed, as refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: (in_features, out_features) of every adapted Linear
Shapes = Sequence[tuple[int, int]]


@dataclass(frozen=True)
class Entry:
    #: the config field that sizes the tuner (``r``, ``n_frequency``, ...); None for a fixed size
    knob: str | None
    #: the knob's values on these target shapes, ordered by increasing trainable count (a float knob,
    #: a density or sparsity, in fixed steps)
    values: Callable[[Shapes], Sequence[int | float]] | None = None
    #: config fields set beyond peft's defaults (besides target_modules and the knob)
    options: dict = field(default_factory=dict)
    #: why those options, or anything else a reader of docs/methods.md should know
    why: str = ""
    #: "linear": the recipe's target projections; "norm": every LayerNorm / RMSNorm of the blocks
    targets: str = "linear"
    #: an untrained adapter leaves the backbone's output unchanged
    zero_init: bool = True
    mergeable: bool = True
    #: prompt-style tuners need a language model's embeddings and generation cache
    lm_only: bool = False
    #: why this tuner type is not a method here (None: it is one)
    refused: str | None = None


def prompt_style(what: str) -> Entry:
    """A tuner of virtual tokens or a key/value prefix: a language model's inputs."""
    return Entry(knob=None, lm_only=True, refused=f"language backbones only ({what}); "
                 "peftbench's language tasks do not run prompt-style tuners yet")


PROMPT_STYLE = {
    name: prompt_style(what)
    for name, what in {
        "prompt_tuning": "trained virtual-token embeddings",
        "multitask_prompt_tuning": "virtual tokens shared across tasks",
        "p_tuning": "virtual tokens from a prompt encoder",
        "prefix_tuning": "a trained key/value prefix in every layer",
        "adaption_prompt": "gated adaption prompts in the top layers of a Llama",
        "cpt": "context-aware prompt tuning over in-context examples",
    }.items()
}


def ranks(shapes: Shapes) -> range:
    """1 up to the smallest side of any adapted layer: the knob of the low-rank tuners."""
    return range(1, min(min(shape) for shape in shapes) + 1)
