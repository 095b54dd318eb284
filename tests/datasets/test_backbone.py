"""The mosaic backbones' networks."""

import torch
from torch import nn

from hashbench.datasets.backbone import Fc7Backbone

FC7_WIDTH = 1024


def test_the_fc7_backbone_has_vgg_shape():
    model = Fc7Backbone()
    layers = [type(m) for m in model.fc]
    assert layers == [nn.Linear, nn.ReLU, nn.Dropout] * 2  # fc6, fc7
    assert isinstance(model.trunk[-1], nn.Flatten) and model.head.in_features == FC7_WIDTH
    images = torch.rand(4, 1, 56, 56)
    with torch.no_grad():
        features = model.eval()(images)
        assert (features >= 0).all() and torch.equal(features, model(images))
        assert not torch.equal(model.train()(images), model(images))  # dropout, in train mode only
