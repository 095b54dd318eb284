"""The shipped backbone file's form."""

import numpy as np
import torch

from hashbench.datasets.backbone import BACKBONES
from hashbench.datasets.backbone_exact import quantise_weights
from hashbench.datasets.backbone_shipped import pack_state, unpack_state


def test_packed_state_unpacks_to_the_same_bits():
    torch.manual_seed(0)
    state = quantise_weights(BACKBONES["fc7"]().state_dict())
    arrays = pack_state(state)
    assert arrays["int8:fc.0.weight"].dtype == np.int8
    unpacked = unpack_state(arrays)
    assert sorted(unpacked) == sorted(state) and all(torch.equal(unpacked[k], state[k]) for k in state)
