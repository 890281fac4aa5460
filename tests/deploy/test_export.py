"""Export of every head, with flip at test time built into the graph: Paddle Inference and ONNX Runtime against
the eager network and against eval's flip features."""
import os

import numpy as np
import paddle
import pytest

from metric_learning.deploy import artifact, embedders, export
from metric_learning.evaluation import evaluator, metrics
from metric_learning.models.reid_net import build_model

BACKBONE = "OSNet_x0_25"
SHAPE = (3, 96, 32)   # OSNet at stride 8 (PCB, MGN's part branches): 12 map rows for the stripes
HEADS = {"global": {}, "pcb": {"num_parts": 4}, "mgn": {}}


@pytest.fixture(params=sorted(HEADS))
def net(request):
    """A fresh network per test: Paddle's dy2static cannot convert one network a second time for another
    wrapper ("forward doesn't exist in the Module transformed from AST")."""
    paddle.seed(0)
    built = build_model(BACKBONE, head=request.param, **HEADS[request.param])
    built.eval()
    return built


@pytest.fixture(scope="module")
def image_paths(synthetic_root):
    query = os.path.join(synthetic_root, "query")
    return [os.path.join(query, name) for name in sorted(os.listdir(query))[:5]]


def test_exported_flip_model_gives_evals_flip_features(net, image_paths, tmp_path):
    prefix = str(tmp_path / "reid")
    config = export.export_inference_model(net, prefix, SHAPE, flip=True)
    assert config["flip"] is True and config["feature_dim"] == net.embedding_dim
    assert artifact.read_export_config(prefix)[1]["flip"] is True
    exported = evaluator.extract_features(embedders.PredictorEmbedder(prefix), image_paths, SHAPE)
    eval_flip = metrics.l2_normalize(evaluator.extract_features(net, image_paths, SHAPE, flip=True))
    np.testing.assert_allclose(exported, eval_flip, atol=1e-5)
    # and it is not the unflipped embedding: the mirror changed something
    plain = metrics.l2_normalize(evaluator.extract_features(net, image_paths, SHAPE))
    assert np.abs(exported - plain).max() > 1e-3
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    export.export_onnx(prefix)
    assert export.onnx_parity(prefix, batch_size=3) < 1e-4


def test_exported_model_reloads_as_the_eager_network(net, tmp_path):
    prefix = str(tmp_path / "reid")
    config = export.export_inference_model(net, prefix, SHAPE)
    assert config["flip"] is False
    batch = np.random.default_rng(0).normal(size=(3,) + SHAPE).astype("float32")
    with paddle.no_grad():
        eager = metrics.l2_normalize(net(paddle.to_tensor(batch)).numpy())
    np.testing.assert_allclose(embedders.PredictorEmbedder(prefix)(batch), eager, atol=1e-5)
