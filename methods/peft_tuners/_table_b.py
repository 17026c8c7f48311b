"""Table entries for part of peft's tuner types (see table.py for what an entry says)."""

from __future__ import annotations

from math import ceil, gcd

from .table import Entry, Shapes, prompt_style, ranks


def _side(shapes: Shapes) -> int:
    return min(min(shape) for shape in shapes)


def _in_ranks(shapes: Shapes) -> range:
    """1 up to the smallest input width: a rank bounded by d_in only."""
    return range(1, min(i for i, _ in shapes) + 1)


def _randlora(shapes: Shapes) -> list[int]:
    """Ranks by count: ceil(m/r) bases of r scales plus m scales each, m = min(d_in, d_out)."""
    def count(r):
        return sum(ceil(min(s) / r) * (r + min(s)) for s in shapes)
    return sorted(range(1, _side(shapes) + 1), key=count)


def _block_sizes(shapes: Shapes) -> list[int]:
    """The common divisors of every d_in and d_out, largest first (d_in*d_out/b per layer)."""
    g = 0
    for i, o in shapes:
        g = gcd(g, gcd(i, o))
    return [b for b in range(g, 0, -1) if g % b == 0]


def _sparsities(shapes: Shapes) -> list[float]:
    """Frozen shares of W in steps of 1e-4, from the highest that leaves every layer one trained entry."""
    first = ceil(10_000 / min(i * o for i, o in shapes))
    return [round(1 - k / 10_000, 4) for k in range(first, 10_001)]

ENTRIES: dict[str, Entry] = {
    "unilora": Entry("theta_d_length", values=lambda s: range(1, 32 * sum(i + o for i, o in s) + 1),
                     options={"r": 32}, zero_init=False,
                     why="length of the one trained vector whose entries fill rank-32 LoRA factors by fixed random "
                         "indices (r=32 so budgets up to LoRA r=32 fit); uniform random init, not an identity"),
    "miss": Entry("r", values=_in_ranks, why="shard width: one trained r x d_out block shared by every r-wide input "
                                              "shard (r*d_out per layer)"),
    "randlora": Entry("r", values=_randlora,
                      why="rank of the shared random bases; the count falls as r grows (ceil(m/r)(r+m) per layer, "
                          "m=min(d_in,d_out)), so ranks are listed by count; steps are coarse at small r"),
    "road": Entry(None, options={"variant": "road_4", "group_size": 32},
                  why="2D rotations and scales of the output; fixed size: road_4, the largest of peft's variants "
                      "(4 d_out per layer; road_1, road_2 train a quarter, a half); group_size=32 divides every width"),
    "trainable_tokens": Entry(None, refused="trains chosen rows (token_indices) of the input embedding, not linear "
                                            "layers: a tuner of tokens, for new vocabulary"),
    "hira": Entry("r", values=ranks, why="rank of the low-rank factor multiplied elementwise with W "
                                         "(r(d_in+d_out) per layer)"),
    "shira": Entry("r", values=lambda s: range(1, min(i * o // (i + o) for i, o in s) + 1),
                   why="r(d_in+d_out) trained entries of W at fixed random positions per layer (LoRA's count at r)"),
    "c3a": Entry("block_size", values=_block_sizes, zero_init=False,
                 why="size of the circulant blocks (d_in*d_out/b per layer), a common divisor of every width, so the "
                     "ladder is coarse; peft's default xavier init is not an identity"),
    "waveft": Entry("n_frequency", values=lambda s: range(1, min(i * o for i, o in s) + 1),
                    why="trained wavelet coefficients per layer at random positions, inverse-transformed to a dense "
                        "update (peft's scaling 25)"),
    "osf": Entry("effective_rank", values=lambda s: range(max(min(x) for x in s) - 1, 0, -1),
                 why="top singular directions of W kept frozen; the other m-k train as U,S,V ((m-k)(d_in+d_out+1) "
                     "per layer, m=min(d_in,d_out)), so values descend; a layer with m <= k trains nothing"),
    "delora": Entry("r", values=ranks, why="rank of the norm-bounded low-rank update (r(d_in+d_out)+1 per layer, "
                                           "the bound lambda trains)"),
    "gralora": Entry("r", values=lambda s: range(2, _side(s) + 1, 2),
                     why="rank spread over gralora_k=2 x 2 sub-blocks (r(d_in+d_out) per layer), so r is even"),
    "cartridge": prompt_style("a trained KV-cache prefix served as past_key_values"),
    "tinylora": Entry("u", values=lambda s: range(1, 5),
                      why="trained vector per layer projected to an r x r update between frozen SVD factors (r=2): "
                          "u beyond r*r=4 adds only redundant directions, so larger budgets are not reached"),
    "psoft": Entry("r", values=ranks, why="size of the r x r orthogonal rotation between frozen SVD factors "
                                          "(r(r-1)/2 + 2r per layer)"),
    "peanut": Entry("r", values=ranks, why="width of the weight-aware adapter on W's output side: A (d_out->r) and "
                                           "B (r->d_out), 2r*d_out per layer"),
    "shadow": Entry(None, lm_only=True, mergeable=False,
                    refused="wraps whole decoder blocks of a decoder-only LM with a parallel shadow decoder, not "
                            "linear or norm layers; its size is a whole backbone's"),
    "supertuning": Entry("sparsity", values=_sparsities,
                         why="the share of each W left frozen: the largest-magnitude (1 - sparsity) d_in*d_out "
                             "entries train; a float knob, in steps of 1e-4"),
    "deft": Entry("r", values=ranks, why="rank of the projection P and injection R (r(d_in+d_out) per layer)"),
}
