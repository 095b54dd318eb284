"""The mosaics' rendering and their image source."""

import numpy as np

from hashbench.datasets.mosaic_layout import render_mosaics


def test_image_loading_by_index_slice_and_scalar(micro):
    images = micro.database.images
    assert images.load(np.array([4, 2])).shape == (2, 1, 56, 56)
    np.testing.assert_array_equal(images.load(slice(2, 5))[0], images.load(2))
    assert micro.database.subset([3, 1]).images.load([0]).shape == (1, 1, 56, 56)


def test_render_places_and_mirrors_items():
    items = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    cells = np.array([[0, -1, -1, 1]])
    mosaic = render_mosaics(items, cells, np.array([[False, False, False, True]]))[0, 0]
    np.testing.assert_array_equal(mosaic[:28, :28], items[0])
    np.testing.assert_array_equal(mosaic[28:, 28:], items[1][:, ::-1])
    assert mosaic[:28, 28:].max() == 0
