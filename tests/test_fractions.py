"""Fractions of a training split: nested, class-stratified, fixed by the split seed."""

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from peftbench.errors import UsageError
from peftbench.fractions import nested_subset, parse_fractions, strata


def labelled(counts):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return TensorDataset(torch.arange(len(labels)).float().unsqueeze(1), labels)


def indices(subset):
    return set(subset.indices)


def test_subsets_are_nested_and_keep_each_class_share():
    data = labelled([600, 300, 100])
    small, large = nested_subset(data, 0.05), nested_subset(data, 0.1)
    assert indices(small) < indices(large)
    assert np.bincount(strata(small)).tolist() == [30, 15, 5]
    assert np.bincount(strata(large)).tolist() == [60, 30, 10]
    assert nested_subset(data, 1.0) is data


def test_every_class_keeps_an_example_and_the_subset_is_fixed():
    data = labelled([1000, 3])
    tiny = nested_subset(data, 0.01)
    assert np.bincount(strata(tiny)).tolist() == [10, 1]
    assert indices(tiny) == indices(nested_subset(data, 0.01))


def test_subsets_of_subsets_and_of_example_lists():
    data = Subset(labelled([50, 50]), list(range(0, 100, 2)))
    assert np.bincount(strata(nested_subset(data, 0.2))).tolist() == [5, 5]

    class Example:
        def __init__(self, answer):
            self.answer = answer

    examples = [Example(i % 4) for i in range(40)]
    half = nested_subset(examples, 0.5)
    assert isinstance(half, list) and sorted(e.answer for e in half) == sorted([0, 1, 2, 3] * 5)


def test_regression_targets_form_one_stratum():
    data = TensorDataset(torch.randn(64, 3), torch.randn(64, 2))
    assert len(nested_subset(data, 0.25)) == 16


@pytest.mark.parametrize("text, named", [("0.1,x", "'x'"), ("0", "0"), ("1.5", "1.5"), ("-0.1", "-0.1"), ("", "''")])
def test_bad_fraction_lists_name_the_bad_value(text, named):
    with pytest.raises(UsageError, match=named):
        parse_fractions(text)


def test_fraction_lists_are_sorted_and_deduplicated():
    assert parse_fractions("1.0,0.1,0.05,0.1") == (0.05, 0.1, 1.0)


def test_epoch_samples_give_a_small_fraction_the_steps_of_a_large_one(tmp_path):
    from conftest import tiny_run

    from peftbench.cli import main
    from peftbench.store import Store

    store = tmp_path / "r.db"
    assert main(tiny_run("lora", "--fractions", "0.05,1.0", "--epoch-samples", "500", epochs=2, store=store)) == 0
    runs = {r["data_fraction"]: r for r in Store(str(store)).records()}
    small, full = runs[0.05], runs[1.0]
    assert small["settings"]["epoch_samples"] == 500 and "epoch_samples" in small["settings"]["overrides"]
    assert small["details"]["train_examples"] < 100 < 500 < full["details"]["train_examples"]
    seen = {f: round(r["train_seconds"] * r["train_samples_per_s"]) for f, r in runs.items()}
    assert seen == {0.05: 2 * 500, 1.0: 2 * full["details"]["train_examples"]}  # never fewer than the split
