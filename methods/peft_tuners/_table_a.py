"""Table entries for part of peft's tuner types (see table.py for what an entry says)."""

from __future__ import annotations

from .table import Entry, Shapes, ranks

#: values the frozen random projections of a VeRA-style tuner may hold (64 MB in fp32), as methods/vera.py
PROJECTION_FLOOR = 2**24
#: VBLoRA's sub-vector length: it must divide every adapted width (peft's 256 divides neither 384 nor 32)
VECTOR_LENGTH = 32


def by_count(count, candidates) -> list:
    """The candidates ordered by the trainable count ``count(value)`` they give (ties by value)."""
    return sorted(candidates, key=lambda v: (count(v), v))


def block_sizes(shapes: Shapes) -> list[int]:
    """Block sizes of 2 or more that divide every adapted layer's input width."""
    return [b for b in range(2, min(i for i, _ in shapes) + 1) if all(i % b == 0 for i, _ in shapes)]


def even_ranks(shapes: Shapes) -> range:
    return range(2, min(i for i, _ in shapes) + 1, 2)


def widest_out(shapes: Shapes) -> range:
    return range(1, max(o for _, o in shapes) + 1)


def halves(d: int) -> tuple[int, int]:
    """peft's LoKr factorization of d with decompose_factor=2."""
    return (2, d // 2) if d % 2 == 0 else (1, d)


def lokr_ranks(shapes: Shapes) -> list[int]:
    """LoKr's large factor turns full once r >= max(side)/2, which can lower the count: order by count."""
    def count(r):
        total = 0
        for i, o in shapes:
            (small_in, big_in), (small_out, big_out) = halves(i), halves(o)
            full = r >= max(big_in, big_out) / 2
            total += small_in * small_out + (big_in * big_out if full else r * (big_in + big_out))
        return total
    top = max(max(halves(i)[1], halves(o)[1]) for i, o in shapes) // 2 + 1
    return by_count(count, range(1, top + 1))


def pvera_ranks(shapes: Shapes) -> range:
    """Up to the rank whose frozen projections (2r x widest input, widest output x r) fill PROJECTION_FLOOR."""
    widest = 2 * max(i for i, _ in shapes) + max(o for _, o in shapes)
    return range(1, PROJECTION_FLOOR // widest + 1)


def fourier_frequencies(shapes: Shapes) -> range:
    return range(1, min(i * o for i, o in shapes) + 1)


def sparse_rates(shapes: Shapes) -> list[float]:
    """FRoD's off-diagonal density in steps of 1e-4 (nnz = int(d_in^2 * rate) per layer)."""
    return [k / 10_000 for k in range(1, 10_001)]


ENTRIES: dict[str, Entry] = {
    "adalora": Entry("init_r", values=ranks, options={"total_step": 1},
                     why="SVD-form LoRA of rank init_r; the harness never calls update_and_allocate (nor adds the "
                         "orthogonal penalty, which needs a model loss), so ranks stay fixed; total_step is a "
                         "required placeholder"),
    "adamss": Entry("num_subspaces", values=widest_out,
                    why="K, the number of clustered SVD subspaces, each of rank 1 over R=100 singular vectors "
                        "(K*min(R,d_in,d_out)+d_out per layer; K is capped at d_out); ASA pruning (a training "
                        "callback) is off"),
    "beft": Entry(None, mergeable=False,
                  why="one learned bias per output feature; fixed size; merging needs a base bias, which Llama's "
                      "projections lack"),
    "boft": Entry("boft_block_size", values=block_sizes,
                  why="the size of the orthogonal blocks (a divisor of every d_in: a coarse ladder); one butterfly "
                      "factor; each block stores a full b x b matrix of which the Cayley map uses the skew part"),
    "fourierft": Entry("n_frequency", values=fourier_frequencies, zero_init=False,
                       why="the number of trained spectral coefficients per layer; peft's default init is random "
                           "(as the paper's), so the untrained adapter changes the output"),
    "frod": Entry("sparse_rate", values=sparse_rates, options={"progressbar": False},
                  why="the density of the trained sparse rotation (d_in^2*rate entries) beside d_in trained "
                      "scales per layer; a float knob, in steps of 1e-4"),
    "glora": Entry("r", values=ranks, options={"config_C": "none", "config_D_E": "none"},
                   why="the rank of GLoRA's two low-rank weight paths (W0 + W0*A + B: 2r(d_in+d_out) per layer); "
                       "the bias paths C, D, E are off, as on Llama's bias-less projections, else r=1 overshoots "
                       "small budgets"),
    "hra": Entry("r", values=even_ranks,
                 why="the number of Householder reflections (d_in each); even, since peft's identity init pairs "
                     "them"),
    "ia3": Entry(None, options={"feedforward_modules": []}, why="one learned scale per output feature; fixed size"),
    "lily": Entry("r", values=ranks, mergeable=False,
                  why="the rank of each layer's A and of the 2 B adapters shared across blocks per target, mixed "
                      "by an input-dependent router (so no merge); a step costs about d_in per layer: coarse"),
    "ln_tuning": Entry(None, targets="norm",
                       why="trains a copy of every block's LayerNorm / RMSNorm; fixed size"),
    "loha": Entry("r", values=ranks, why="the rank of both Hadamard factors (2r(d_in+d_out) per layer)"),
    "lokr": Entry("r", values=lokr_ranks, options={"decompose_factor": 2},
                  why="the rank of the large Kronecker factor; decompose_factor=2 (a 2x2 small factor) so the "
                      "count can reach LoRA's (peft's square-root split caps it far below)"),
    "oft": Entry("oft_block_size", values=block_sizes,
                 why="the size of the orthogonal blocks, b(b-1)/2 values each (a divisor of every d_in: a coarse "
                     "ladder)"),
    "poly": Entry(None, refused="needs task_ids at every forward (PolyRouter raises 'task_ids should not be None'); "
                               "the harness passes only the model's inputs"),
    "pvera": Entry("r", values=pvera_ranks,
                   why="the rank of the shared frozen random projections: 2r trained values per layer beside d_out "
                       "(a budget needs ranks in the thousands, as VeRA's); noise is sampled in training only"),
    "vblora": Entry("num_vectors", values=lambda shapes: range(2, 4097),
                    options={"vector_length": VECTOR_LENGTH},
                    zero_init=False,
                    why="the size of the shared vector bank (each sub-vector's logits span it; r=4, top-2); "
                        f"vector_length={VECTOR_LENGTH} must divide every width; both factors start random"),
    "xlora": Entry(None, refused="mixes LoRA adapters trained beforehand (XLoraConfig.adapters: saved paths) "
                                 "through a trained gate; there are no such experts to mix"),
}
