"""infer.py writes embeddings that eval.py's features mode scores exactly like the model itself."""
import os
import subprocess
import sys

import numpy as np
import pytest

from metric_learning import experiment, market, train_elem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def checkpoint_dir(synthetic_root, tmp_path_factory):
    save = tmp_path_factory.mktemp("infer_ckpt")
    args = train_elem.parse_args(["--model", "MobileNetV3_small_x1_0", "--image_shape", "3,64,32",
                                  "--train_batch_size", "16", "--total_iter_num", "1", "--synthetic_root",
                                  synthetic_root, "--model_save_dir", str(save)])
    run = experiment.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
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
    from metric_learning import checkpoint, evaluation, metrics

    net = checkpoint.load_model_for_eval(checkpoint_dir)
    direct, q_feats, g_feats = evaluation.evaluate_protocol(evaluation.LayerEmbedder(net), protocol, (3, 64, 32),
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
