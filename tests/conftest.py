import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub call would stall ~45 s before failing
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # the machine's two cores are shared

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "results.db")
