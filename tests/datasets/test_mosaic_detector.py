"""The mosaics' object detector, which gives the aux labels."""

import numpy as np

from hashbench.datasets.backbone_shipped import load_shipped_backbone
from hashbench.datasets.mosaic_layout import render_mosaics


def test_aux_is_the_classifier_on_each_cell_shown_alone(micro):
    images, threshold = micro.database.images, micro.info["params"]["detector_threshold"]
    model = load_shipped_backbone("fc7").exact()
    assert micro.database.aux.any()  # the test below would hold vacuously otherwise
    for row in range(10):
        expected = np.zeros(10, bool)
        for k in np.flatnonzero(images.cells[row] >= 0):
            alone = np.full((1, 4), -1)
            alone[0, k] = images.cells[row, k]
            pixels = render_mosaics(images.items, alone, images.flips[[row]])
            expected |= model.probabilities(pixels)[0].numpy().astype(np.float32) >= threshold
        np.testing.assert_array_equal(micro.database.aux[row].astype(bool), expected)
