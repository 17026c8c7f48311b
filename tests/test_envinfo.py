"""What a record says produced it."""

import torch

from peftbench.envinfo import cpu_name, environment


def test_a_cpu_is_named_by_its_model_and_the_instructions_torch_uses():
    name = cpu_name()
    assert name.startswith("cpu (") and name.endswith(f", {torch.backends.cpu.get_cpu_capability()})")
    assert len(name) > len(f"cpu (, {torch.backends.cpu.get_cpu_capability()})")
    if not torch.cuda.is_available():
        assert environment()["device"] == name
