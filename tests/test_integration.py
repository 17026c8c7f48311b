"""The real offline backbone, trained for a few steps: the loss must fall."""

import copy

import pytest
import torch

from peftbench.backbones import load_backbone
from peftbench.registry import methods
from peftbench.tasks.quick import QUICK
from peftbench.train import Classifier


@pytest.fixture(scope="module")
def dinov2():
    try:
        return load_backbone("dinov2-s", 56)
    except RuntimeError as exc:  # the offline package is not installed
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def digits(dinov2):
    splits = QUICK.tasks[0].load(56, dinov2.mean, dinov2.std)
    x, y = splits.train[:64]
    return x, y


@pytest.mark.parametrize("name", ["lora", "hora"])
def test_a_few_steps_on_dinov2_lower_the_loss(dinov2, digits, name):
    torch.manual_seed(0)
    method = methods().loaded[name]()
    local = copy.deepcopy(dinov2)
    x, y = digits
    with torch.no_grad():
        base_features = local.module(x[:4])
    encoder = method.apply(local, {"r": 8}, method.defaults)
    with torch.no_grad():  # the adapted model starts as the pretrained one
        torch.testing.assert_close(encoder(x[:4]), base_features, atol=1e-5, rtol=1e-5)
    model = Classifier(encoder, dinov2.feature_dim, 10)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=method.defaults["lr"])
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    with torch.no_grad():  # and the adapter moved the features, not only the head
        assert not torch.allclose(encoder(x[:4]), base_features, atol=1e-4)
