"""The leaderboard: a typed model (``model``) built from the store (``build``), rendered as
markdown (``markdown``) and as one self-contained interactive page (``html``)."""
