"""The shared training loop: schedule, measured memory, divergence."""

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from peftbench.backbones import load_backbone
from peftbench.registry import methods
from peftbench.train import Classifier, TrainConfig, TrainingDiverged, evaluate, train, warmup_cosine


def test_warmup_then_cosine_to_zero():
    factor = warmup_cosine(100, 0.1)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5, abs=0.02)
    assert factor(100) == pytest.approx(0.0, abs=1e-9)
    assert all(factor(i) >= factor(i + 1) for i in range(10, 100))


@pytest.fixture(scope="module")
def tiny():
    backbone = load_backbone("tiny-dinov2", 28)
    torch.manual_seed(0)
    x = torch.randn(64, 3, 28, 28)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()  # learnable from the pixels
    return backbone, TensorDataset(x, y)


def run(backbone, data, name, lr=1e-2, epochs=3):
    method = methods().loaded[name]()
    torch.manual_seed(0)
    model = Classifier(method.apply(copy.deepcopy(backbone), {"r": 4} if method.knobs else {}, method.defaults),
                       backbone.feature_dim, 2)
    return model, train(model, data, TrainConfig(epochs, 16, lr, 0.0, seed=0), progress=False)


def test_training_memory_grows_with_what_is_trained(tiny):
    backbone, data = tiny
    peaks = {name: run(backbone, data, name, epochs=1)[1].peak_memory_mb for name in ("linear", "lora", "full")}
    assert peaks["linear"] < peaks["lora"] < peaks["full"]


def test_same_seed_same_result(tiny):
    backbone, data = tiny
    first, second = run(backbone, data, "lora")[0], run(backbone, data, "lora")[0]
    assert evaluate(first, data)[0] == evaluate(second, data)[0]
    for a, b in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(a, b)


def test_a_diverging_loss_stops_training(tiny):
    backbone, data = tiny
    poisoned = TensorDataset(data.tensors[0] * float("inf"), data.tensors[1])
    with pytest.raises(TrainingDiverged, match="nan|inf"):
        run(backbone, poisoned, "lora")


def test_the_linear_probe_on_cached_features_trains_as_the_full_loop_does(tiny):
    from peftbench.kinds import KINDS
    from peftbench.recipe import Recipe

    backbone, data = tiny
    classify, recipe = KINDS["classify"], Recipe()
    config = TrainConfig(3, 16, 0.0, 0.0, seed=0, head_lr=1e-2)
    heads, accuracies = [], []
    for frozen in (False, True):
        method = methods().loaded["linear"]()
        torch.manual_seed(0)
        model = classify.build(type("T", (), {"num_classes": 2}), backbone,
                               method.apply(copy.deepcopy(backbone), {}, method.defaults))
        initial = model.head.weight.detach().clone()
        classify.train(model, backbone, data, config, recipe, frozen=frozen, progress=False)
        heads.append([p.detach().clone() for p in model.head.parameters()])
        accuracies.append(classify.score(model, backbone, data, recipe, frozen=frozen).metric)
    for looped, cached in zip(*heads):
        torch.testing.assert_close(cached, looped, rtol=1e-4, atol=1e-5)  # batch sizes round differently
    assert accuracies[0] == accuracies[1]
    assert not torch.equal(heads[1][0], initial)  # it trained


def test_an_epoch_draws_at_least_epoch_samples_examples_and_otherwise_shuffles_as_before():
    from torch.utils.data import DataLoader

    from peftbench.loading import shuffled

    data = TensorDataset(torch.arange(10).float().unsqueeze(1), torch.arange(10))
    before = [y.tolist() for _, y in DataLoader(data, batch_size=4, shuffle=True,
                                                generator=torch.Generator().manual_seed(3))]
    assert [y.tolist() for _, y in shuffled(data, 4, seed=3)] == before
    drawn = torch.cat([y for _, y in shuffled(data, 4, seed=3, epoch_samples=25)])
    assert len(drawn) == 25 and sorted(drawn[:10].tolist()) == sorted(drawn[10:20].tolist()) == list(range(10))
    assert len(shuffled(data, 4, seed=3, epoch_samples=5)) == 3  # never fewer than the whole set
    steps = []
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-3, weight_decay=0.0, seed=0, epoch_samples=25)
    stats = train(Classifier(torch.nn.Identity(), 1, 10), data, config, progress=False,
                  on_epoch=lambda epoch: steps.append(epoch))
    assert steps == [0, 1] and round(stats.seconds * stats.samples_per_s) == 2 * 25  # two epochs of 25 draws
