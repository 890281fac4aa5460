"""Shared fixtures. Importing metric_learning first sets the CPU runtime defaults before Paddle loads."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import metric_learning  # noqa: E402,F401  (must precede any paddle import)
import pytest  # noqa: E402

DEFAULT_MARKET_ROOT = os.path.join(ROOT, "..", "shared", "datasets", "Market-1501-v15.09.15")
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
def synthetic_root(tmp_path_factory):
    """The embedded default synthetic dataset (Market-1501 layout), generated once per test session."""
    from metric_learning.engine import build

    root = str(tmp_path_factory.mktemp("synthetic") / "synthetic")
    return build.ensure_synthetic(root, log=lambda *_: None)
