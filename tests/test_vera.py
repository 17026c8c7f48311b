"""VeRA's dense update: the function and the gradients of peft's own forward, at less cost."""

import copy

import pytest
import torch
from peft.tuners.vera.layer import Linear as PeftVeraLinear

from peftbench.backbones import load_backbone
from peftbench.methods.vera import VeRA, dense_update_pays


def test_the_dense_update_pays_only_at_high_rank_and_many_tokens():
    assert dense_update_pays(tokens=544, rank=5760, d_in=384, d_out=384)  # dinov2-s at 56 px, batch 32
    assert not dense_update_pays(tokens=544, rank=8, d_in=384, d_out=384)
    assert not dense_update_pays(tokens=1, rank=5760, d_in=384, d_out=384)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_dense_update_matches_peft_forward_and_gradients(dropout):
    torch.manual_seed(0)
    backbone = load_backbone("tiny-vit")
    model = VeRA().apply(copy.deepcopy(backbone), {"r": 200}, {"dropout": dropout})
    layers = [m for m in model.modules() if isinstance(m, PeftVeraLinear)]
    assert layers and all(type(m) is not PeftVeraLinear for m in layers)
    for layer in layers:  # a trained state: the update is no longer zero
        torch.nn.init.normal_(layer.vera_lambda_b["default"])
    x = torch.randn(4, 3, backbone.image_size, backbone.image_size)
    results = []
    for forward in ("dense", "peft"):
        if forward == "peft":
            for layer in layers:
                layer.__class__ = PeftVeraLinear
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks
        out = model(x)
        out.square().sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        results.append((out.detach(), grads))
    (dense, dense_grads), (peft, peft_grads) = results
    assert dense_update_pays(x.shape[0] * 17, 200, layers[0].in_features, layers[0].out_features)
    torch.testing.assert_close(dense, peft, atol=1e-5, rtol=1e-4)
    for got, expected in zip(dense_grads, peft_grads, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
