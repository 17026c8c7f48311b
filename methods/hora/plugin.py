"""HoRA as a peftbench method: the tuner in this package, configured from the backbone's layout."""

import bisect
import heapq
import math
import weakref
from types import SimpleNamespace

from peftbench.budget import TOLERANCE
from peftbench.errors import UsageError
from peftbench.method import PeftMethod, low_rank_space

from . import HoraConfig
from .config import ACTIVATIONS
from .count import count_from_shapes, hora_shapes

ATTENTION_ROLES = ("q", "k", "v")
#: The generator's width is HoRA's second size knob, which spans the gap between one rank and the
#: next so that a budget is met within 1%; the solver keeps it as near the spec's 32 as it can.
HIDDEN = range(8, 257)
DEFAULT_HIDDEN = 32

_shapes_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class HoRA(PeftMethod):
    name = "hora"
    description = "cross-head low-rank adaptation: per-layer hypernetworks generate per-head B (HoRA)"
    # HoRA trains the generator through seeds that start small: it wants a larger step than LoRA.
    defaults = {"lr": 3e-3, "weight_decay": 1e-4, "alpha_over_r": 1.0, "dropout": 0.0,
                "activation": "tanh", "share": "heads", "seeds": "shared", "axis": "rank", "proj_axis": "rank"}
    fine_knobs = ("hidden",)
    options = {"share": ("heads", "none", "qv"), "seeds": ("shared", "separate"), "axis": ("rank", "head_dim"),
               "proj_axis": ("rank", "generator"), "activation": ACTIVATIONS}
    #: the options that change the trainable-parameter count
    SHAPING = ("share", "seeds", "axis", "proj_axis")

    def search_space(self, trial):
        return low_rank_space(trial)  # as LoRA's: the generator's width is part of the budgeted size

    def sizes(self, backbone):
        """(r, hidden) in increasing count: for each rank the widths in order, merged across ranks."""
        def at_rank(r):
            return ((self.count(backbone, {"r": r, "hidden": m}), r, m) for m in HIDDEN)

        merged = heapq.merge(*(at_rank(r) for r in range(1, backbone.layout.hidden_size + 1)))
        return ({"r": r, "hidden": m} for _, r, m in merged)

    def near(self, backbone, target):
        """Bisected rather than scanned: the ranks whose widths can land within 1% of ``target``,
        and in each the width nearest the spec's 32 that does, then the widths either side of the
        target (the closest below, where none lands)."""
        def count(r, m):
            return self.count(backbone, {"r": r, "hidden": m})

        low, high = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
        ranks = range(1, backbone.layout.hidden_size + 1)
        last = bisect.bisect_right(ranks, high, key=lambda r: count(r, HIDDEN[0]))
        first = min(bisect.bisect_left(ranks, low, key=lambda r: count(r, HIDDEN[-1])), max(last - 1, 0))
        found = set()
        for r in ranks[first:last]:
            above = bisect.bisect_left(HIDDEN, target, key=lambda m: count(r, m))
            found.update((r, m) for m in HIDDEN[max(above - 1, 0):above + 1])
            inside = (bisect.bisect_left(HIDDEN, low, key=lambda m: count(r, m)),
                      bisect.bisect_right(HIDDEN, high, key=lambda m: count(r, m)) - 1)
            if inside[0] <= inside[1]:
                found.add((r, min(max(DEFAULT_HIDDEN, HIDDEN[inside[0]]), HIDDEN[inside[1]])))
        # in count order, as the solver expects; equal counts (no generator to widen) nearest 32 first
        sizes = ({"r": r, "hidden": m} for r, m in found)
        return sorted(sizes, key=lambda size: (count(size["r"], size["hidden"]), self.preference(size)))

    def preference(self, size):
        return abs(math.log2(size["hidden"] / DEFAULT_HIDDEN))

    def peft_config(self, backbone, size, hparams) -> HoraConfig:
        layout = backbone.layout
        roles = [role for role in ATTENTION_ROLES if role in backbone.target_roles]
        plain = [name for role in backbone.target_roles if role not in ATTENTION_ROLES
                 for name in layout.modules(role)]
        names = {"q": layout.q, "k": layout.k, "v": layout.v}
        r = size["r"]
        options = {k: hparams.get(k, self.defaults[k]) for k in ("activation", *self.SHAPING)}
        return HoraConfig(
            r=r,
            hidden=size.get("hidden", DEFAULT_HIDDEN),
            alpha=hparams.get("alpha_over_r", 1.0) * r,
            dropout=hparams.get("dropout", 0.0),
            num_attention_heads=layout.num_heads,
            num_key_value_heads=layout.num_kv_heads,
            head_dim=layout.head_dim,
            targets=roles,
            role_names={names[role].rsplit(".", 1)[-1]: role for role in ATTENTION_ROLES},
            # the spec's option for the other targets (a Llama MLP): plain LoRA of the same rank
            lora_modules=[name.rsplit(".", 1)[-1] for name in plain] or None,
            target_modules=[names[role] for role in roles] + plain,
            **options,
        )

    def check(self, backbone):
        layout = backbone.layout
        if layout.num_heads % layout.num_kv_heads or layout.head_dim * layout.num_heads < 1:
            raise UsageError(f"hora cannot adapt {backbone.name}: {layout.num_heads} query heads do not "
                             f"split evenly over {layout.num_kv_heads} key/value heads")
        if not any(role in backbone.target_roles for role in ATTENTION_ROLES):
            raise UsageError(f"hora adapts attention heads: targets {','.join(backbone.target_roles)} "
                             f"name no q, k or v projection")

    def count(self, backbone, size):
        # the shapes once per backbone and targets; then the closed form alone, thousands of times a solve
        cache = _shapes_cache.setdefault(backbone.module, {})
        if backbone.target_roles not in cache:
            cache[backbone.target_roles] = hora_shapes(self.peft_config(backbone, size, self.defaults),
                                                       backbone.module)
        options = {k: self.defaults[k] for k in self.SHAPING}
        config = SimpleNamespace(r=size["r"], hidden=size.get("hidden", DEFAULT_HIDDEN),
                                 num_attention_heads=backbone.layout.num_heads, **options)
        return count_from_shapes(config, cache[backbone.target_roles])["total"]
