"""infer.py writes embeddings that eval.py's features mode scores exactly like the model itself."""
import os
import subprocess
import sys

import numpy as np
import pytest

from metric_learning import train_elem
from metric_learning.data import market
from metric_learning.engine import build
from conftest import ROOT



@pytest.fixture(scope="module")
def checkpoint_dir(synthetic_root, tmp_path_factory):
    save = tmp_path_factory.mktemp("infer_ckpt")
    args = train_elem.parse_args(["--model", "MobileNetV3_small_x1_0", "--image_shape", "3,64,32",
                                  "--train_batch_size", "16", "--total_iter_num", "1", "--synthetic_root",
                                  synthetic_root, "--model_save_dir", str(save)])
    run = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    run.evaluate_fn = None
    run.fit()
    return os.path.join(str(save), args.model, "latest")


def test_dataset_root_embeddings_match_direct_evaluation(synthetic_root, checkpoint_dir, tmp_path):
    from metric_learning import eval as eval_cli
    from metric_learning import infer

    out = str(tmp_path / "feats")
    infer.main(["--checkpoint", checkpoint_dir, "--dataset_root", synthetic_root, "--output_dir", out])
    protocol = market.load_protocol(synthetic_root)
    query = np.load(os.path.join(out, "query.npy"))
    assert query.shape[0] == len(protocol.query) and query.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(query, axis=1), 1.0, rtol=1e-5)
    with open(os.path.join(out, "gallery.txt")) as f:
        assert [line.strip() for line in f] == [os.path.basename(s.path) for s in protocol.gallery]
    from_files = eval_cli.main(["--query_feats", os.path.join(out, "query.npy"), "--gallery_feats",
                                os.path.join(out, "gallery.npy"), "--query_list", os.path.join(out, "query.txt"),
                                "--gallery_list", os.path.join(out, "gallery.txt")])
    from metric_learning.evaluation import evaluator, metrics
    from metric_learning.models import checkpoint

    net = checkpoint.load_model_for_eval(checkpoint_dir)
    direct, q_feats, g_feats = evaluator.evaluate_protocol(evaluator.LayerEmbedder(net), protocol, (3, 64, 32),
                                                            return_features=True)
    np.testing.assert_allclose(query, metrics.l2_normalize(q_feats), atol=2e-5)
    np.testing.assert_allclose(np.load(os.path.join(out, "gallery.npy")), metrics.l2_normalize(g_feats), atol=2e-5)
    # A one-iteration net has many near-ties that float rounding orders differently (the features themselves
    # agree to 2e-5 above), so the metrics agree only closely, not exactly.
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert from_files[key] == pytest.approx(direct[key], abs=0.01), key
    assert from_files["num_valid_query"] == direct["num_valid_query"] == len(protocol.query)


def test_image_list_and_a_missing_image(synthetic_root, checkpoint_dir, tmp_path):
    names = sorted(os.listdir(os.path.join(synthetic_root, "query")))[:3]
    listing = tmp_path / "crops.txt"
    listing.write_text("".join("query/%s\n" % n for n in names))
    out = subprocess.run([sys.executable, "metric_learning/infer.py", "--checkpoint", checkpoint_dir,
                          "--image_list", str(listing), "--image_root", synthetic_root, "--output_dir",
                          str(tmp_path / "o"), "--name", "crops"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert np.load(tmp_path / "o" / "crops.npy").shape[0] == 3
    listing.write_text("query/%s\nquery/does_not_exist.jpg\n" % names[0])
    out = subprocess.run([sys.executable, "metric_learning/infer.py", "--checkpoint", checkpoint_dir,
                          "--image_list", str(listing), "--image_root", synthetic_root], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "does_not_exist.jpg" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime"])
def test_exported_model_writes_what_the_checkpoint_writes(synthetic_root, checkpoint_dir, tmp_path, backend):
    from metric_learning import infer
    from metric_learning.deploy import export
    from metric_learning.models import checkpoint

    prefix = str(tmp_path / "exported" / "reid")
    export.export_inference_model(checkpoint.load_model_for_eval(checkpoint_dir), prefix, (3, 64, 32))
    model_path = prefix
    if backend == "onnxruntime":
        pytest.importorskip("paddle2onnx")
        pytest.importorskip("onnxruntime")
        model_path = export.export_onnx(prefix)
    names = ["query/%s" % n for n in sorted(os.listdir(os.path.join(synthetic_root, "query")))[:5]]
    listing = tmp_path / "crops.txt"
    listing.write_text("".join(n + "\n" for n in names))
    common = ["--image_list", str(listing), "--image_root", synthetic_root, "--flip", "True",
              "--test_batch_size", "2", "--name", "crops"]
    infer.main(["--checkpoint", checkpoint_dir, "--output_dir", str(tmp_path / "ckpt")] + common)
    infer.main(["--inference_model", model_path, "--output_dir", str(tmp_path / "exp")] + common)
    expected, feats = (np.load(tmp_path / d / "crops.npy") for d in ("ckpt", "exp"))
    assert feats.shape == expected.shape == (5, expected.shape[1]) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, expected, atol=1e-4)
    assert (tmp_path / "exp" / "crops.txt").read_text().split() == names
    with pytest.raises(ValueError, match="--image_shape 3,128,64 does not match the exported model's input 3,64,32"):
        infer.main(["--inference_model", model_path, "--image_shape", "3,128,64"] + common)
