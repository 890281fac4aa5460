"""metric_learning.deploy.extractor and the ONNX export: crop geometry, parity with the eager model, bad inputs."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from metric_learning.data import transforms
from metric_learning.deploy import artifact, export
from metric_learning.deploy.extractor import Extractor, fit_boxes_to_aspect
from metric_learning.evaluation import metrics

IMAGE_SHAPE = (3, 64, 32)     # model input H x W = 64 x 32: aspect (W / H) 0.5
FRAME_SHAPE = (100, 200, 3)   # frame H x W = 100 x 200
# hand-made boxes (left, top, width, height) and the rectangles (x1, y1, x2, y2) worked out by hand
WIDE = [10, 20, 60, 40]       # height 40 -> width 20 around centre x 40: x 30..50, y 20..60
TALL = [50, 0, 10, 80]        # height 80 -> width 40 around centre x 55: x 35..75, y 0..80
EDGE = [190, 50, 20, 60]      # height 60 -> width 30 around x 200: x 185..215 -> 185..200; y 50..110 -> 50..100
HAND_RECTS = {"wide": [30, 20, 50, 60], "tall": [35, 0, 75, 80], "edge": [185, 50, 200, 100]}


def test_fit_boxes_narrows_widens_and_clips_as_worked_out_by_hand():
    rects, valid = fit_boxes_to_aspect([WIDE, TALL, EDGE], 0.5, FRAME_SHAPE)
    assert rects.tolist() == [HAND_RECTS["wide"], HAND_RECTS["tall"], HAND_RECTS["edge"]]
    assert rects.dtype == np.int64 and valid.tolist() == [True, True, True]
    # the same boxes as left, top, right, bottom
    ltrb = [[10, 20, 70, 60], [50, 0, 60, 80], [190, 50, 210, 110]]
    assert fit_boxes_to_aspect(ltrb, 0.5, FRAME_SHAPE, box_format="ltrb")[0].tolist() == rects.tolist()


def test_fit_boxes_rounds_edges_to_the_nearest_pixel_halves_up():
    # height 20 -> width 10 around centre x 15.3: x 10.3..20.3 -> 10..20; y 20.5..40.5 -> 21..41
    rects, valid = fit_boxes_to_aspect([[10.3, 20.5, 10, 20]], 0.5, FRAME_SHAPE)
    assert rects.tolist() == [[10, 21, 20, 41]] and valid.tolist() == [True]


def test_fit_boxes_marks_degenerate_boxes():
    boxes = [[10, 10, 0, 50],            # zero width
             [10, 10, 5, -3],            # negative height
             [300, 10, 20, 40],          # right of the frame: x 300..320 -> 200..200, empty
             [-30, 10, 20, 40],          # left of it: x -30..-10 -> 0..0
             [np.nan, 10, 20, 40],       # not a number
             [10, 20.1, 10, 0.2],        # rounds to no pixel: y 20.1..20.3 -> 20..20
             WIDE]
    rects, valid = fit_boxes_to_aspect(boxes, 0.5, FRAME_SHAPE)
    assert valid.tolist() == [False] * 6 + [True]
    assert rects[:6].tolist() == [[0, 0, 0, 0]] * 6 and rects[6].tolist() == HAND_RECTS["wide"]
    with pytest.raises(ValueError, match="box_format must be one of ltwh, ltrb"):
        fit_boxes_to_aspect(boxes, 0.5, FRAME_SHAPE, box_format="xywh")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny untrained ReIDNet (eval mode) and its Paddle export, input name 'crops' as PP-Tracking feeds it."""
    import paddle

    from metric_learning.models.reid_net import build_model

    paddle.seed(0)
    net = build_model("MobileNetV3_small_x1_0", embedding_size=16)
    net.eval()
    prefix = str(tmp_path_factory.mktemp("extractor") / "reid")
    export.export_inference_model(net, prefix, IMAGE_SHAPE, input_name="crops")
    return net, prefix


@pytest.fixture(scope="module")
def onnx_path(exported):
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    return export.export_onnx(exported[1])


@pytest.fixture(scope="module", params=["paddle", "onnxruntime"])
def extractor(request, exported):
    path = request.getfixturevalue("onnx_path") if request.param == "onnxruntime" else exported[1]
    built = Extractor(path, batch_size=2, threads=1)
    assert built.backend == request.param
    return built


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(0).integers(0, 256, FRAME_SHAPE, dtype=np.uint8)


def eager_embeddings(net, crops_bgr):
    """The reference: the project's evaluation transform (RGB, bilinear resize, ImageNet mean/std), eager net."""
    import paddle

    transform = transforms.build_transforms(IMAGE_SHAPE, train=False)
    batch = np.stack([transform(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)) for crop in crops_bgr])
    with paddle.no_grad():
        return metrics.l2_normalize(net(paddle.to_tensor(batch)).numpy())


def hand_crops(frame):
    return [frame[y1:y2, x1:x2] for x1, y1, x2, y2 in HAND_RECTS.values()]


def test_extractor_equals_the_eager_model_on_the_hand_cropped_boxes(extractor, exported, frame):
    net, _ = exported
    expected = eager_embeddings(net, hand_crops(frame))
    feats = extractor(frame, [WIDE, TALL, EDGE])       # 3 boxes in batches of 2 and 1
    assert feats.shape == (3, 16) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(feats, expected, atol=1e-4)
    # distinct crops give distinct embeddings, so the comparison above cannot pass by all rows being alike
    assert np.abs(expected[0] - expected[1]).max() > 1e-2
    np.testing.assert_allclose(extractor.embed_crops(hand_crops(frame)), expected, atol=1e-4)
    ltrb = [[x, y, x + w, y + h] for x, y, w, h in (WIDE, TALL, EDGE)]
    np.testing.assert_allclose(extractor(frame, ltrb, box_format="ltrb"), feats, atol=1e-6)


def test_degenerate_boxes_raise_naming_the_box_or_are_skipped_with_a_mask(extractor, frame):
    with pytest.raises(ValueError, match=r"box 1 \(ltwh \[10, 10, 0, 50\]\) has zero or negative width or height"):
        extractor(frame, [WIDE, [10, 10, 0, 50], TALL])
    with pytest.raises(ValueError, match=r"box 0 \(ltwh \[300, 10, 20, 40\]\) covers no pixel of the 200x100"):
        extractor(frame, [[300, 10, 20, 40]])
    with pytest.raises(ValueError, match="box 0 .* non-finite"):
        extractor(frame, [[np.inf, 10, 20, 40]])
    feats, mask = extractor(frame, [WIDE, [10, 10, 0, 50], TALL, [300, 10, 20, 40]], on_degenerate="skip")
    assert mask.tolist() == [True, False, True, False]
    np.testing.assert_allclose(feats, extractor(frame, [WIDE, TALL]), atol=1e-6)
    feats, mask = extractor(frame, np.zeros((0, 4)), on_degenerate="skip")
    assert feats.shape == (0, 16) and mask.shape == (0,)
    assert extractor.embed_crops([]).shape == (0, 16)


def test_bad_frames_crops_and_arguments_give_clear_errors(extractor, frame):
    with pytest.raises(ValueError, match=r"frame: expected a non-empty HxWx3 uint8 BGR image, got \(100, 200, 3\) "
                                         r"float32"):
        extractor(frame.astype(np.float32), [WIDE])
    with pytest.raises(ValueError, match=r"crop 1: expected .* got \(0, 5, 3\) uint8"):
        extractor.embed_crops([frame[:10, :10], frame[:0, :5]])
    with pytest.raises(ValueError, match=r"boxes must be \[N, 4\] .* got shape \[2, 3\]"):
        extractor(frame, [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="on_degenerate must be one of raise, skip"):
        extractor(frame, [WIDE], on_degenerate="drop")


def test_deep_sort_realtime_takes_the_embeddings_of_the_kept_detections(extractor, frame):
    from deep_sort_realtime.deepsort_tracker import DeepSort

    tracker = DeepSort(max_age=5, n_init=1, embedder=None)
    detections = [(WIDE, 0.9, "person"), ([10, 10, 0, 50], 0.8, "person"), (EDGE, 0.7, "person")]
    feats, mask = extractor(frame, [box for box, _, _ in detections], on_degenerate="skip")
    kept = [det for det, keep in zip(detections, mask) if keep]
    tracks = tracker.update_tracks(kept, embeds=feats)
    assert len(tracks) == 2
    np.testing.assert_array_equal(np.stack([t.get_feature() for t in tracks]), feats)


def test_onnx_export_matches_paddle_inference(exported, onnx_path):
    assert onnx_path == exported[1] + ".onnx" and os.path.getsize(onnx_path) > 100000
    assert export.onnx_parity(exported[1], batch_size=4) <= 1e-4


def copy_model(prefix, directory, suffixes):
    os.makedirs(directory, exist_ok=True)
    for suffix in suffixes:
        shutil.copy(prefix + suffix, os.path.join(directory, "reid" + suffix))
    return os.path.join(directory, "reid")


def test_onnx_export_failures_raise_instead_of_passing_silently(exported, tmp_path, monkeypatch):
    paddle2onnx = pytest.importorskip("paddle2onnx")
    prefix = copy_model(exported[1], str(tmp_path), (".json", ".pdiparams", artifact.CONFIG_SUFFIX))
    with open(prefix + ".onnx", "wb") as f:
        f.write(b"stale file from an earlier export")

    def exits(*args, **kwargs):   # what paddle2onnx does on a conversion error: log, then sys.exit(-1)
        raise SystemExit(-1)

    for fake in (exits, lambda *args, **kwargs: None):
        monkeypatch.setattr(paddle2onnx, "export", fake)
        with pytest.raises(RuntimeError, match="paddle2onnx could not convert .*reid.json to ONNX"):
            export.export_onnx(prefix)
        assert not os.path.exists(prefix + ".onnx")


def test_missing_files_and_configs_are_named(exported, onnx_path, tmp_path):
    prefix = exported[1]
    with pytest.raises(FileNotFoundError, match=r"nowhere/reid is incomplete: reid\.json is missing"):
        Extractor(str(tmp_path / "nowhere" / "reid"))
    no_config = copy_model(prefix, str(tmp_path / "no_config"), (".json", ".pdiparams"))
    with pytest.raises(FileNotFoundError, match=r"reid\.reid\.json is missing"):
        Extractor(no_config)
    no_params = copy_model(prefix, str(tmp_path / "no_params"), (".json", artifact.CONFIG_SUFFIX))
    with pytest.raises(FileNotFoundError, match=r"reid\.pdiparams is missing"):
        Extractor(no_params)
    with pytest.raises(FileNotFoundError, match=r"ONNX model .*missing\.onnx does not exist"):
        Extractor(str(tmp_path / "missing.onnx"))
    lone_onnx = copy_model(prefix, str(tmp_path / "lone_onnx"), (".onnx",))
    with pytest.raises(FileNotFoundError, match=r"lone_onnx/reid\.onnx has no preprocessing config: "
                                                r".*lone_onnx/reid\.reid\.json is missing"):
        Extractor(lone_onnx + ".onnx")
    with pytest.raises(ValueError, match="is an ONNX model; backend='paddle' needs the Paddle export"):
        Extractor(onnx_path, backend="paddle")
    with pytest.raises(ValueError, match="backend must be one of auto, paddle, onnxruntime"):
        Extractor(prefix, backend="tensorrt")


def test_a_config_missing_fields_is_named(exported, tmp_path):
    prefix = copy_model(exported[1], str(tmp_path), (".json", ".pdiparams", artifact.CONFIG_SUFFIX))
    with open(prefix + artifact.CONFIG_SUFFIX) as f:
        config = json.load(f)
    del config["mean"], config["std"]
    with open(prefix + artifact.CONFIG_SUFFIX, "w") as f:
        json.dump(config, f)
    with pytest.raises(ValueError, match=r"reid\.reid\.json lacks mean, std"):
        Extractor(prefix)
    with open(prefix + artifact.CONFIG_SUFFIX, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match=r"reid\.reid\.json is not valid JSON"):
        Extractor(prefix)


def test_export_model_cli_writes_onnx_and_prints_its_parity(tmp_path, capsys):
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    from metric_learning import export_model
    from metric_learning.models import checkpoint
    from metric_learning.models.reid_net import build_model

    config = {"model": {"model": "MobileNetV3_small_x1_0", "embedding_size": 16}, "image_shape": list(IMAGE_SHAPE)}
    ckpt = checkpoint.save_checkpoint(str(tmp_path / "ckpt" / "1"), build_model(**config["model"]).state_dict(),
                                      {}, {}, {}, config)
    prefix = str(tmp_path / "out" / "reid")
    export_model.main(["--checkpoint", ckpt, "--output", prefix, "--onnx", "True", "--input_name", "crops"])
    lines = capsys.readouterr().out.splitlines()
    parity = [line for line in lines if "ONNX Runtime vs Paddle Inference" in line]
    assert len(parity) == 1 and parity[0].startswith("exported %s.onnx;" % prefix)
    assert float(parity[0].rsplit("max |diff| ", 1)[1]) <= 1e-4
    assert Extractor(prefix + ".onnx", threads=1).input_shape == IMAGE_SHAPE
