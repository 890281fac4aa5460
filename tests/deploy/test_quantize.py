"""metric_learning.deploy.quantize: int8 ONNX models from an export, and their check against fp32."""
import collections
import json
import os

import numpy as np
import pytest

from metric_learning.deploy import artifact, quantize
from metric_learning.deploy.embedders import load_embedder
from conftest import export_untrained_onnx

IMAGE_SHAPE = (3, 64, 32)


@pytest.fixture(scope="module")
def onnx_prefix(tmp_path_factory):
    pytest.importorskip("onnxruntime.quantization")
    pytest.importorskip("onnx")
    onnx_path = export_untrained_onnx(tmp_path_factory.mktemp("quantize"), "OSNet_x0_25", IMAGE_SHAPE, last_stride=2)
    return onnx_path[: -len(".onnx")]


def test_int8_model_is_quantised_checked_on_other_images_and_loads_like_any_export(onnx_prefix, synthetic_root):
    import onnx

    image_dir = os.path.join(synthetic_root, "bounding_box_train")
    int8_path, check = quantize.quantize_int8(onnx_prefix, image_dir, calibration_images=24, check_images=20)
    assert int8_path == onnx_prefix + "_int8.onnx"
    ops = collections.Counter(node.op_type for node in onnx.load(int8_path).graph.node)
    # every convolution reads quantised weights and activations: QDQ pairs around each of them
    assert ops["Conv"] > 50 and ops["QuantizeLinear"] >= ops["Conv"] and ops["DequantizeLinear"] > ops["Conv"]
    int8_weights = [t for t in onnx.load(int8_path).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= ops["Conv"]

    config = json.load(open(onnx_prefix + "_int8" + artifact.CONFIG_SUFFIX))
    assert config["precision"] == "int8" and config["int8_check"] == check
    assert config["int8_calibration"]["images"] == 24 and "model_file" not in config
    assert config["input_shape"] == list(IMAGE_SHAPE)

    # the recorded check is the cosine on the 20 images not used to calibrate, recomputed here
    calibration, held_out = quantize.split_images(image_dir, 24, 20)
    assert not set(calibration) & set(held_out) and len(held_out) == check["images"] == 20
    fp32, int8 = embeddings_of(onnx_prefix + ".onnx", int8_path, held_out)
    assert_check_is_the_cosine(check, fp32, int8)
    # int8 moves the embedding but keeps it recognisable (this untrained OSNet, measured: mean 0.9998, min 0.9996)
    assert 0.9 < check["mean_cosine"] < 1.0 - 1e-6


def test_fp16_model_has_half_weights_float32_ends_and_its_check(onnx_prefix, synthetic_root):
    import onnx

    image_dir = os.path.join(synthetic_root, "bounding_box_train")
    fp16_path, check = quantize.convert_fp16(onnx_prefix, image_dir, check_images=20)
    assert fp16_path == onnx_prefix + "_fp16.onnx"
    graph = onnx.load(fp16_path).graph
    # paddle2onnx writes the weights as Constant nodes, not initializers
    constants = {node.output[0]: node.attribute[0].t.data_type for node in graph.node if node.op_type == "Constant"}
    conv_weights = [constants[node.input[1]] for node in graph.node if node.op_type == "Conv"]
    assert len(conv_weights) > 50 and set(conv_weights) == {onnx.TensorProto.FLOAT16}
    # a consumer feeds and reads float32, as from the fp32 export
    assert [v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output)] == [onnx.TensorProto.FLOAT] * 2

    config = json.load(open(onnx_prefix + "_fp16" + artifact.CONFIG_SUFFIX))
    assert config["precision"] == "fp16" and config["fp16_check"] == check and "model_file" not in config
    _, checked = quantize.split_images(image_dir, 0, 20)
    fp32, fp16 = embeddings_of(onnx_prefix + ".onnx", fp16_path, checked)
    assert_check_is_the_cosine(check, fp32, fp16)
    # half precision rounds every value, so the embedding moves, but by far less than int8 does
    assert 0 < np.abs(fp32 - fp16).max() < 1e-2 and check["min_cosine"] > 0.999


def embeddings_of(fp32_path, reduced_path, paths):
    fp32, reduced = load_embedder(fp32_path), load_embedder(reduced_path)
    batch = np.concatenate(list(quantize.load_batches(paths, fp32.config)))
    return fp32(batch), reduced(batch)


def assert_check_is_the_cosine(check, a, b):
    cosines = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert check["images"] == len(cosines)
    assert check["mean_cosine"] == pytest.approx(cosines.mean(), abs=1e-6)
    assert check["min_cosine"] == pytest.approx(cosines.min(), abs=1e-6)


def test_too_few_images_is_a_clear_error_before_quantising(tmp_path):
    (tmp_path / "0001_c1s1_000001_00.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"--int8_calibration .* holds 1 images; 40 are needed \(30 to calibrate, "
                                         r"10 to check\)"):
        quantize.split_images(str(tmp_path), 30, 10)
    with pytest.raises(ValueError, match=r"--fp16_check .* holds 1 images; 10 are needed \(10 to check\)$"):
        quantize.split_images(str(tmp_path), 0, 10, flag="--fp16_check")


def test_export_cli_refuses_int8_without_onnx(tmp_path, capsys):
    from metric_learning import export_model
    from metric_learning.models import checkpoint

    (tmp_path / checkpoint.MODEL_FILE).write_bytes(b"")  # passes the --checkpoint check, which comes first
    with pytest.raises(SystemExit):
        export_model.parse_args(["--checkpoint", str(tmp_path), "--int8_calibration", str(tmp_path)])
    assert "--int8_calibration quantises the ONNX model: add --onnx True" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    ([], "--fp16_check converts the ONNX model: add --onnx True"),
    (["--onnx", "True"], "--fp16_check %s is not a folder of images"),
])
def test_export_cli_refuses_fp16_without_onnx_or_images(tmp_path, capsys, extra, message):
    from metric_learning import export_model
    from metric_learning.models import checkpoint

    (tmp_path / checkpoint.MODEL_FILE).write_bytes(b"")
    missing = str(tmp_path / "no_such_folder")
    with pytest.raises(SystemExit):
        export_model.parse_args(["--checkpoint", str(tmp_path), "--fp16_check", missing] + extra)
    assert message.replace("%s", missing) in capsys.readouterr().err
