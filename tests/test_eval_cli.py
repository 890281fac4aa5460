"""eval.py and metric_learning.evaluation.evaluator: features files, exported models, checkpoints, list files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from metric_learning.data import market
from metric_learning.evaluation import evaluator, metrics
from conftest import ROOT

SCRIPT = os.path.join(ROOT, "metric_learning", "eval.py")
IMAGE_SHAPE = (3, 32, 16)


def market_names(rng, count, pids, cams):
    return ["%04d_c%ds1_%06d_00.jpg" % (pid, cam, rng.integers(0, 10 ** 6)) if pid >= 0
            else "-1_c%ds1_%06d_00.jpg" % (cam, rng.integers(0, 10 ** 6))
            for pid, cam in zip(pids[:count], cams[:count])]


@pytest.fixture
def feature_files(tmp_path):
    """Query/gallery .npy + name lists with Market-style names: 20 ids, 3 cameras, junk and distractors."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((21, 16))
    q_pids, q_cams = np.repeat(np.arange(1, 21), 2), np.tile([1, 2], 20)
    g_pids = np.concatenate([np.repeat(np.arange(1, 21), 3), [0] * 5, [-1] * 5])
    g_cams = np.concatenate([np.tile([1, 2, 3], 20), rng.integers(1, 4, 10)])
    files = {}
    for split, pids, cams in (("query", q_pids, q_cams), ("gallery", g_pids, g_cams)):
        feats = centers[np.maximum(pids, 0)] + 1.2 * rng.standard_normal((len(pids), 16))
        np.save(tmp_path / (split + ".npy"), feats.astype(np.float32))
        (tmp_path / (split + ".txt")).write_text("\n".join(market_names(rng, len(pids), pids, cams)) + "\n")
        files[split] = (feats, pids, cams - 1)
    return tmp_path, files


def feature_args(directory):
    return ["--query_feats", str(directory / "query.npy"), "--gallery_feats", str(directory / "gallery.npy"),
            "--query_list", str(directory / "query.txt"), "--gallery_list", str(directory / "gallery.txt")]


def run_script(args, cwd):
    return subprocess.run([sys.executable, SCRIPT if cwd == ROOT else "eval.py"] + args, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_features_cli_from_repo_root_and_from_the_package_folder(feature_files):
    directory, files = feature_files
    (qf, qp, qc), (gf, gp, gc) = files["query"], files["gallery"]
    expected = metrics.evaluate_ranking((qf, gf), qp, gp, qc, gc)
    assert 0.2 < expected["mAP"] < 0.9          # neither trivial nor hopeless: ordering mistakes would show
    for cwd in (ROOT, os.path.join(ROOT, "metric_learning")):
        out = directory / "metrics.json"
        done = run_script(feature_args(directory) + ["--json", str(out), "--per_camera", "True"], cwd)
        assert done.returncode == 0, done.stderr
        result = json.loads(out.read_text())
        for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
            assert result[key] == pytest.approx(expected[key], abs=1e-12)
            assert 0.0 <= result[key] <= 1.0
        assert (result["num_query"], result["num_valid_query"], result["num_gallery"]) == (40, 40, 65)
        assert set(result["per_camera"]) == {"c1", "c2"}
        assert "Rank-1" in done.stdout and "%.2f" % (100 * expected["mAP"]) in done.stdout


def test_features_cli_rerank_and_euclidean_match_the_library(feature_files):
    from metric_learning import eval as eval_cli
    from metric_learning.evaluation.rerank import k_reciprocal_distance

    directory, files = feature_files
    (qf, qp, qc), (gf, gp, gc) = files["query"], files["gallery"]
    result = eval_cli.main(feature_args(directory) + ["--rerank", "True", "--k1", "6", "--k2", "3",
                                                      "--metric", "euclidean", "--ranks", "1,3"])
    keep = gp != -1                                 # re-ranking runs on the gallery without junk
    distmat = k_reciprocal_distance(qf, gf[keep], 6, 3, 0.3, "euclidean")
    expected = metrics.evaluate_ranking(distmat, qp, gp[keep], qc, gc[keep], ranks=(1, 3))
    assert result["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    assert result["rank3"] == pytest.approx(expected["rank3"], abs=1e-12)
    assert result["rerank"] == {"k1": 6, "k2": 3, "lambda_value": 0.3}
    assert {"rank1", "rank3", "rank5", "rank10"} <= set(result)     # 1, 5, 10 always computed
    plain = metrics.evaluate_ranking((qf, gf), qp, gp, qc, gc, metric="euclidean")
    assert result["mAP"] != pytest.approx(plain["mAP"], abs=1e-6)


def test_plot_writes_the_cmc_and_per_camera_charts_of_the_library_numbers(feature_files, tmp_path):
    from metric_learning import eval as eval_cli, plots

    directory, files = feature_files
    (qf, qp, qc), (gf, gp, gc) = files["query"], files["gallery"]
    expected = metrics.evaluate_ranking((qf, gf), qp, gp, qc, gc, ranks=range(1, plots.CMC_MAX_RANK + 1),
                                        per_camera=True)
    charts = tmp_path / "charts"
    result = eval_cli.main(feature_args(directory) + ["--plot", str(charts)])
    ranks, cmc = plots.cmc_curve(result)
    assert ranks.tolist() == list(range(1, plots.CMC_MAX_RANK + 1))
    assert cmc.tolist() == [expected["rank%d" % k] for k in ranks]
    assert cmc[0] < cmc[-1] == 1.0 and (np.diff(cmc) >= 0).all()    # 65 gallery images: Rank-50 finds everyone
    assert result["per_camera"] == expected["per_camera"] and set(result["per_camera"]) == {"c1", "c2"}
    assert sorted(os.listdir(charts)) == ["cmc.png", "per_camera.png"]
    for name in ("cmc.png", "per_camera.png"):
        with Image.open(charts / name) as image:
            assert image.size[1] == 4 * plots.FIGURE_DPI


@pytest.mark.parametrize("extra,message", [
    (["--max_memory_gb", "0.00001", "--rerank", "True"], "over the 0.0 GB budget"),
    (["--name_pattern", "duke"], "query.txt line 1: file name '0001_c1s1"),
])
def test_features_cli_errors_are_one_clear_line(feature_files, extra, message):
    directory, _ = feature_files
    done = run_script(feature_args(directory) + extra, ROOT)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_features_rows_must_match_the_names(feature_files):
    directory, _ = feature_files
    names = (directory / "gallery.txt").read_text().splitlines()
    (directory / "gallery.txt").write_text("\n".join(names[:-1]) + "\n")
    with pytest.raises(ValueError, match="gallery.npy has 70 rows but .*gallery.txt lists 69 names"):
        evaluator.load_feature_set(str(directory / "gallery.npy"), str(directory / "gallery.txt"))


def test_cli_flag_combinations(feature_files, capsys):
    from metric_learning import eval as eval_cli

    directory, _ = feature_files
    for argv, message in ((feature_args(directory)[:4], "missing --query_list --gallery_list"),
                          (["--inference_model", "x"], "give one dataset"),
                          (["--dataset_root", "x"], "give one model"),
                          (["--inference_model", "x", "--test_list", "t.txt"], "needs --image_root"),
                          (["--inference_model", "x", "--test_list", "t.txt", "--image_root", ".", "--plot", "p"],
                           "--plot apply to a query/gallery evaluation"),
                          (feature_args(directory) + ["--plot", str(directory / "query.npy")],
                           "--plot takes a folder"),
                          (feature_args(directory) + ["--inference_model", "x"], "not both")):
        with pytest.raises(SystemExit):
            eval_cli.parse_args(argv)
        assert message in capsys.readouterr().err, argv


# ---- models on images -------------------------------------------------------------------------------

IDS, CAMS = 5, 3


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    """A tiny Market-layout dataset of generated images: each id a colour pair (top/bottom), camera = tint."""
    root = tmp_path_factory.mktemp("tiny_market")
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (IDS + 1, 2, 3))
    for folder, pids, cams in (("query", range(1, IDS + 1), [1]),
                               ("bounding_box_test", list(range(0, IDS + 1)) + [-1], range(1, CAMS + 1))):
        os.makedirs(root / folder)
        for pid in pids:
            for cam in cams:
                for shot in range(2 if folder == "bounding_box_test" else 1):
                    image = np.empty((32, 16, 3), np.float64)
                    image[:16], image[16:] = colours[max(pid, 0), 0], colours[max(pid, 0), 1]
                    image = np.clip(image * (0.85 + 0.1 * cam) + rng.normal(0, 8, image.shape), 0, 255)
                    name = ("%04d" % pid if pid >= 0 else "-1") + "_c%ds1_%06d_%02d.jpg" % (cam, 100 * cam, shot)
                    Image.fromarray(image.astype(np.uint8)).save(root / folder / name)
    return root


def tiny_net():
    import paddle

    class TinyNet(paddle.nn.Layer):
        embedding_dim = 12

        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 12, 3, stride=2)

        def forward(self, x):
            return paddle.nn.functional.adaptive_avg_pool2d(paddle.nn.functional.relu(self.conv(x)), 1).flatten(1)

    paddle.seed(0)
    return TinyNet()


def test_extract_features_flip_averages_with_the_mirror_image(image_root):
    paths = sorted(str(p) for p in (image_root / "query").iterdir())
    transform = evaluator.eval_transform(IMAGE_SHAPE)

    def first_row(batch):   # an embedding that is not mirror-symmetric: channel 0 of the top pixel row
        return batch[:, 0, 0, :]

    plain = evaluator.extract_features(first_row, paths, IMAGE_SHAPE, batch_size=2)
    flipped = evaluator.extract_features(first_row, paths, IMAGE_SHAPE, batch_size=2, flip=True)
    expected = np.stack([transform(np.asarray(Image.open(p).convert("RGB")))[0, 0] for p in paths])
    np.testing.assert_allclose(plain, expected, rtol=1e-6)
    np.testing.assert_allclose(flipped, (expected + expected[:, ::-1]) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="returned shape"):
        evaluator.extract_features(lambda b: b[:1, 0, 0], paths, IMAGE_SHAPE, batch_size=2)


def test_inference_model_cli_equals_the_layer(image_root, tmp_path):
    from metric_learning import eval as eval_cli
    from metric_learning.data import market
    from metric_learning.deploy import export

    import paddle

    net = tiny_net()
    net.eval()
    prefix = str(tmp_path / "inference" / "reid")
    export.export_inference_model(net, prefix, IMAGE_SHAPE, normalize=False)
    out = tmp_path / "m.json"
    result = eval_cli.main(["--inference_model", prefix, "--dataset_root", str(image_root), "--json", str(out),
                            "--save_features", str(tmp_path / "feats"), "--test_batch_size", "4"])
    assert json.loads(out.read_text())["mAP"] == result["mAP"]
    protocol = market.load_protocol(str(image_root), splits=market.EVALUATION_SPLITS)
    assert len(protocol.gallery) == (IDS + 1) * CAMS * 2              # junk dropped
    direct, q_feats, g_feats = evaluator.evaluate_protocol(evaluator.LayerEmbedder(net), protocol, IMAGE_SHAPE,
                                                            return_features=True)
    saved = np.load(tmp_path / "feats" / "gallery.npy")
    np.testing.assert_allclose(saved, g_feats, rtol=1e-4, atol=1e-5)
    for key in ("rank1", "rank5", "mAP", "mINP", "num_valid_query"):
        assert result[key] == pytest.approx(direct[key], abs=1e-9)
    assert result["num_valid_query"] == IDS and result["rank1"] == 1.0
    # the saved features round-trip through the features path
    names = (tmp_path / "feats" / "query.txt").read_text().split()
    assert [market.parse_name(n)[0] for n in names] == list(range(1, IDS + 1))

    # the same model converted to ONNX gives the same evaluation through ONNX Runtime
    onnx_result = eval_cli.main(["--inference_model", export.export_onnx(prefix), "--dataset_root",
                                 str(image_root), "--test_batch_size", "4"])
    for key in ("rank1", "mAP", "mINP"):
        assert onnx_result[key] == pytest.approx(result[key], abs=1e-6)


def test_checkpoint_cli_and_list_file_recall(image_root, tmp_path, capsys):
    from metric_learning import eval as eval_cli
    from metric_learning.data import listfile, market
    from metric_learning.models import checkpoint
    from metric_learning.models.reid_net import build_model

    config = {"model": {"model": "MobileNetV3_small_x1_0", "embedding_size": 16}, "image_shape": list(IMAGE_SHAPE)}
    net = build_model(**config["model"])
    ckpt = checkpoint.save_checkpoint(str(tmp_path / "ckpt" / "1"), net.state_dict(), {}, {}, {}, config)
    samples = market.load_folder(str(image_root / "bounding_box_test"))
    samples = [s for s in samples if s.pid > 0]
    list_path = str(tmp_path / "test.txt")
    listfile.write_list(list_path, listfile.make_records(samples, str(image_root)))
    result = eval_cli.main(["--checkpoint", ckpt, "--test_list", list_path, "--image_root", str(image_root),
                            "--ranks", "1,2"])
    printed = capsys.readouterr().out
    assert "test_img_num %d, test_recall %.5f" % (len(samples), result["test_recall"]) in printed
    assert "overstates" in printed and "97.8" in printed and "91.5" in printed
    net.eval()
    feats = evaluator.extract_features(net, [s.path for s in samples], IMAGE_SHAPE)
    labels = [s.pid for s in samples]
    expected = metrics.recall_at_k(feats, labels, ks=(1, 2))
    assert result["recall@1"] == pytest.approx(expected[1], abs=1e-9)
    assert result["recall@2"] == pytest.approx(expected[2], abs=1e-9)
    assert result["test_recall"] == result["recall@1"]
