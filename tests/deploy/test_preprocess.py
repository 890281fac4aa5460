import cv2
import numpy as np
import pytest

from metric_learning.data import transforms
from metric_learning.deploy.preprocess import Preprocessor, box_crops, resize_crops


def test_network_preprocessing_is_the_training_normalisation_to_the_bit():
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in ((90, 40), (64, 32), (33, 70))]
    batch = Preprocessor.for_network((3, 64, 32))(crops)
    expected = np.stack([transforms.Normalize()(cv2.resize(crop, (32, 64), interpolation=cv2.INTER_LINEAR)[..., ::-1])
                         for crop in crops])
    assert batch.dtype == np.float32 and batch.shape == (3, 3, 64, 32)
    np.testing.assert_array_equal(batch, expected)


def test_box_crops_round_edges_outwards_and_clip_to_the_frame():
    frame = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    crops = box_crops(frame, [[2.5, 3.2, 4.0, 5.0], [-5, -5, 10, 10]])
    np.testing.assert_array_equal(crops[0], frame[3:9, 2:7])
    np.testing.assert_array_equal(crops[1], frame[0:5, 0:5])
    assert resize_crops(crops, 8, 4).shape == (2, 8, 4, 3)
    with pytest.raises(ValueError, match="box 0 .* lies outside the 30x20 frame"):
        box_crops(frame, [[40, 0, 5, 5]])
