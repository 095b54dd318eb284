"""Fixtures shared by the method tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Small torch ops on a busy 2-core machine run far faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
