"""The real offline backbone, trained for a few steps: the loss must fall."""

import copy

import pytest
import torch

from peftbench.backbones import load_backbone
from peftbench.registry import methods
from peftbench.tasks.quick import QUICK
from peftbench.train import Classifier

pytestmark = pytest.mark.slow  # the real offline backbones, DINOv2-S and SmolLM2-135M, trained for a few steps


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


def test_hora_on_smollm2_grouped_query_attention(smollm2):  # smollm2: the real backbone, from conftest
    """30 layers, 9 query heads sharing 3 KV heads: HoRA adapts q, k and v of every layer."""
    method = methods().loaded["hora"]()
    local = copy.deepcopy(smollm2)
    ids = torch.tensor([[1, 422, 3714, 282, 4649, 314]])
    with torch.no_grad():
        base = local.module(input_ids=ids).logits
    adapted = method.apply(local, {"r": 4}, method.defaults)
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    assert trainable == method.count(smollm2, {"r": 4})
    with torch.no_grad():
        torch.testing.assert_close(adapted(input_ids=ids).logits, base)
    # one step moves the model; merging then changes nothing
    optimizer = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=1e-2)
    adapted(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    with torch.no_grad():
        moved = adapted(input_ids=ids).logits
        assert not torch.allclose(moved, base, atol=1e-4)
        merged = adapted.merge_and_unload()(input_ids=ids).logits
    torch.testing.assert_close(merged, moved, atol=1e-4, rtol=1e-4)
