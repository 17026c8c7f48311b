"""Image files decode in DataLoader worker processes beside a GPU, in the training process on a CPU,
and the batches are the same either way."""

import pytest
import torch
from conftest import MEAN, STD, make_vtab
from torch.utils.data import Subset, TensorDataset

from peftbench import loading
from peftbench.tasks import vtab
from peftbench.train import Classifier, evaluate


@pytest.fixture
def folder_split(tmp_path):
    make_vtab(tmp_path, sizes=(6, 3, 24))
    return vtab.vtab_task("dtd", "natural", 3).load(16, MEAN, STD, str(tmp_path)).test


def test_workers_decode_files_beside_a_gpu_only(folder_split, monkeypatch):
    monkeypatch.delenv(loading.LOADER_WORKERS_ENV, raising=False)
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert loading.decodes(folder_split) and loading.decodes(Subset(Subset(folder_split, [1, 2]), [0]))
    memory = TensorDataset(torch.zeros(4, 3), torch.zeros(4))
    assert not loading.decodes(memory) and loading.loader_workers(memory, gpu) == 0
    assert loading.loader_workers(folder_split, cpu) == 0  # the cores train the model
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert loading.loader_workers(folder_split, gpu) == loading.MAX_LOADER_WORKERS
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert loading.loader_workers(folder_split, gpu) == 1  # one core decodes, one feeds the GPU
    monkeypatch.setenv(loading.LOADER_WORKERS_ENV, "3")
    assert loading.loader_workers(folder_split, cpu) == 3 and loading.loader_workers(memory, cpu) == 0


@pytest.mark.slow  # worker processes
def test_decoding_in_workers_gives_the_same_batches_and_scores(folder_split, monkeypatch):
    inline = list(loading.loader(folder_split, 5, workers=0))
    parallel = list(loading.loader(folder_split, 5, workers=2))
    assert len(inline) == len(parallel) == 5
    for (x0, y0), (x1, y1) in zip(inline, parallel):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    torch.manual_seed(0)
    model = Classifier(torch.nn.Flatten(), 3 * 16 * 16, 3)
    monkeypatch.setenv(loading.LOADER_WORKERS_ENV, "2")
    accuracy, _, correct = evaluate(model, folder_split)
    monkeypatch.setenv(loading.LOADER_WORKERS_ENV, "0")
    accuracy_inline, _, correct_inline = evaluate(model, folder_split)
    assert accuracy == accuracy_inline and torch.equal(correct, correct_inline)
