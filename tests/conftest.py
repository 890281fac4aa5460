"""Shared fixtures. Importing metric_learning first sets the CPU runtime defaults before Paddle loads."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (must precede any paddle import)
import pytest  # noqa: E402

DEFAULT_MARKET_ROOT = os.path.join(ROOT, "..", "shared", "datasets", "Market-1501-v15.09.15")
DEFAULT_MOT17_MINI_ROOT = os.path.join(ROOT, "..", "shared", "datasets", "MOT17-mini")
SHARED_WEIGHTS = os.path.join(ROOT, "..", "shared", "weights")


def shared_weights_file(*parts):
    """A file of ../shared/weights (or $REID_WEIGHTS_DIR); the test is skipped when it is absent."""
    path = os.path.join(os.environ.get("REID_WEIGHTS_DIR") or SHARED_WEIGHTS, *parts)
    if not os.path.isfile(path):
        pytest.skip("%s not found (set REID_WEIGHTS_DIR or place the weights at ../shared/weights)" % path)
    return path


def market1501_root():
    """The real Market-1501 folder from $MARKET1501_ROOT or ../shared, or None when absent."""
    root = os.environ.get("MARKET1501_ROOT") or DEFAULT_MARKET_ROOT
    return os.path.abspath(root) if os.path.isdir(os.path.join(root, "bounding_box_train")) else None


@pytest.fixture(scope="session")
def market_root():
    root = market1501_root()
    if root is None:
        pytest.skip("Market-1501 not found (set MARKET1501_ROOT or place it at ../shared/datasets/Market-1501-v15.09.15)")
    return root


@pytest.fixture(scope="session")
def mot17_mini_root():
    """The MOT17-mini sequences (real MOT17 frames, detections, ground truth) from $MOT17_MINI_ROOT or ../shared."""
    root = os.environ.get("MOT17_MINI_ROOT") or DEFAULT_MOT17_MINI_ROOT
    if not os.path.isfile(os.path.join(root, "MOT17-05-FRCNN", "seqinfo.ini")):
        pytest.skip("MOT17-mini not found (set MOT17_MINI_ROOT or place it at ../shared/datasets/MOT17-mini)")
    return os.path.abspath(root)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """The embedded default synthetic dataset (Market-1501 layout), generated once per test session."""
    from metric_learning.engine import build

    root = str(tmp_path_factory.mktemp("synthetic") / "synthetic")
    return build.ensure_synthetic(root, log=lambda *_: None)


def export_untrained_onnx(directory, model, image_shape, **build_kwargs):
    """``<directory>/reid.onnx`` (+ the Paddle export and .reid.json) of an untrained ``model`` built with
    ``paddle.seed(0)``: a real export for plumbing tests, not for accuracy. Skips without paddle2onnx/onnxruntime."""
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    import paddle

    from metric_learning.deploy import export
    from metric_learning.models.reid_net import build_model

    paddle.seed(0)
    net = build_model(model, **build_kwargs)
    net.eval()
    prefix = os.path.join(str(directory), "reid")
    export.export_inference_model(net, prefix, image_shape)
    return export.export_onnx(prefix)
