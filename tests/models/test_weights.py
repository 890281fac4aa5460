"""Weight loading: .pdparams and Paddle 1.x directories, name aliases, exact load reports."""
import os
import struct

import numpy as np
import paddle
import pytest

from metric_learning.models.backbones import build_backbone
from metric_learning.models.reid_net import ReIDNet
from metric_learning.models.weights import (PADDLE1_DTYPES, load_weights, read_lod_tensor, read_paddle1_dir,
                                     read_state)

SMALL = "MobileNetV3_small_x1_0"  # 211 tensors, 1.x names from a rule table
NUMPY_TO_PADDLE1 = {np.dtype(v): k for k, v in PADDLE1_DTYPES.items()}


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def write_lod_tensor(path, array, lod=(), packed_dims=False):
    """Paddle 1.x LoDTensor file, written by hand from the format description."""
    array = np.ascontiguousarray(array)
    if packed_dims:
        dims = b"".join(_varint(d) for d in array.shape)
        desc = b"\x08" + _varint(NUMPY_TO_PADDLE1[array.dtype]) + b"\x12" + _varint(len(dims)) + dims
    else:
        desc = b"\x08" + _varint(NUMPY_TO_PADDLE1[array.dtype]) + b"".join(b"\x10" + _varint(d) for d in array.shape)
    with open(path, "wb") as f:
        f.write(struct.pack("<IQ", 0, len(lod)))
        for level in lod:
            f.write(struct.pack("<Q", 8 * len(level)) + struct.pack("<%dQ" % len(level), *level))
        f.write(struct.pack("<Ii", 0, len(desc)) + desc + array.tobytes())


def write_paddle1_dir(dirname, state):
    os.makedirs(dirname, exist_ok=True)
    for name, array in state.items():
        write_lod_tensor(os.path.join(dirname, name), array)


def _state(layer):
    return {key: t.numpy() for key, t in layer.state_dict().items()}


# --- Paddle 1.x tensor files ---------------------------------------------------------

def test_hand_writer_matches_paddles_own_serializer(tmp_path):
    save = getattr(paddle.base.core, "save_dense_tensor", None)
    if save is None:
        pytest.skip("this Paddle has no core.save_dense_tensor")
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5
    tensor = paddle.to_tensor(array)  # keep it alive: get_tensor() does not own the memory
    save(tensor.get_tensor(), str(tmp_path / "by_paddle"))
    write_lod_tensor(tmp_path / "by_hand", array)
    assert (tmp_path / "by_paddle").read_bytes() == (tmp_path / "by_hand").read_bytes()
    np.testing.assert_array_equal(read_lod_tensor(str(tmp_path / "by_paddle")), array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8])
def test_lod_tensor_round_trip(tmp_path, dtype):
    array = (np.arange(60).reshape(3, 4, 5) % 17).astype(dtype)
    write_lod_tensor(tmp_path / "t", array, lod=[(0, 2, 3)], packed_dims=dtype is np.int64)
    got = read_lod_tensor(str(tmp_path / "t"))
    assert got.dtype == dtype and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, array)


def test_truncated_lod_tensor_names_the_file(tmp_path):
    write_lod_tensor(tmp_path / "w", np.ones((4, 4), np.float32))
    (tmp_path / "w").write_bytes((tmp_path / "w").read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"w is not a Paddle 1.x LoDTensor file: holds 61 data bytes, "
                                         r"shape \[4, 4\] of float32 needs 64"):
        read_lod_tensor(str(tmp_path / "w"))


def test_paddle1_dir_skips_reserved_and_hidden_files(tmp_path):
    write_paddle1_dir(tmp_path, {"a_weights": np.ones(3, np.float32)})
    (tmp_path / "__model__").write_bytes(b"program desc")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    assert list(read_paddle1_dir(str(tmp_path))) == ["a_weights"]


# --- .pdparams: matching and report ----------------------------------------------------

def test_report_counts_missing_mismatched_unexpected_exactly(tmp_path, capsys):
    source = build_backbone(SMALL)
    state = _state(source)
    assert len(state) == 211
    del state["conv.bn._mean"], state["blocks.0.linear_conv.conv.weight"]      # 2 missing
    state["last_second_conv.conv.weight"] = np.zeros((10, 96, 1, 1), np.float32)  # 1 shape mismatch
    state.update({"fc.weight": np.zeros((1280, 1000), np.float32), "fc.bias": np.zeros(1000, np.float32),
                  "head.scale": np.ones(1, np.float32)})                          # 3 unexpected
    path = str(tmp_path / "partial.pdparams")
    paddle.save(state, path)

    target = build_backbone(SMALL)
    kept_mean = target.conv.bn._mean.numpy().copy()
    kept_last = target.last_second_conv.conv.weight.numpy().copy()
    report = load_weights(target, path)

    assert len(report.loaded) == 208
    assert sorted(report.missing) == ["blocks.0.linear_conv.conv.weight", "conv.bn._mean"]
    assert report.mismatched == [("last_second_conv.conv.weight", "last_second_conv.conv.weight",
                                  (10, 96, 1, 1), (576, 96, 1, 1))]
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight", "head.scale"]
    # loaded values are the file's, skipped tensors keep theirs
    np.testing.assert_array_equal(target.blocks[3].expand_conv.conv.weight.numpy(),
                                  state["blocks.3.expand_conv.conv.weight"])
    np.testing.assert_array_equal(target.conv.bn._mean.numpy(), kept_mean)
    np.testing.assert_array_equal(target.last_second_conv.conv.weight.numpy(), kept_last)
    printed = capsys.readouterr().out
    assert "loaded 208 of 211 tensors of MobileNetV3_small_x1_0" in printed
    assert "shape differs (1): last_second_conv.conv.weight: file [10, 96, 1, 1] vs model [576, 96, 1, 1]" in printed
    assert "not in file, keep their initial values (2)" in printed
    assert "in file but not in model, unused (3)" in printed


def test_paddleclas_backbone_file_loads_into_reidnet_and_back(tmp_path):
    backbone = build_backbone(SMALL)
    paddle.save(backbone.state_dict(), str(tmp_path / "paddleclas.pdparams"))  # no "backbone." prefix
    net = ReIDNet(SMALL, embedding_size=32)
    report = load_weights(net, str(tmp_path / "paddleclas"), verbose=False)  # suffix optional
    assert len(report.loaded) == 211 and not report.unexpected and not report.mismatched
    assert sorted(report.missing) == ["bnneck._mean", "bnneck._variance", "bnneck.bias", "bnneck.weight",
                                      "embedding.weight"]
    np.testing.assert_array_equal(net.backbone.conv.conv.weight.numpy(), backbone.conv.conv.weight.numpy())

    # a ReIDNet checkpoint ("backbone." keys) into a bare backbone: the head is unused
    paddle.save(net.state_dict(), str(tmp_path / "reid.pdparams"))
    bare = build_backbone(SMALL)
    report = load_weights(bare, str(tmp_path / "reid.pdparams"), verbose=False)
    assert len(report.loaded) == 211 and not report.missing
    assert sorted(report.unexpected) == ["bnneck._mean", "bnneck._variance", "bnneck.bias", "bnneck.weight",
                                         "embedding.weight"]


def test_checkpoint_into_reidnet_with_other_embedding_drops_what_no_longer_fits(tmp_path, capsys):
    trained = ReIDNet(SMALL, embedding_size=128, pooling="gem")
    paddle.save(trained.state_dict(), str(tmp_path / "model.pdparams"))
    net = ReIDNet(SMALL, embedding_size=64)
    report = load_weights(net, str(tmp_path / "model.pdparams"))
    assert len(report.loaded) == 211
    assert sorted(m[0] for m in report.mismatched) == ["bnneck._mean", "bnneck._variance", "bnneck.bias",
                                                       "bnneck.weight", "embedding.weight"]
    assert report.unexpected == ["pooling.p"]
    assert "embedding.weight: file [576, 128] vs model [576, 64]" in capsys.readouterr().out


def test_nothing_fits_is_an_error_naming_file_and_model(tmp_path):
    paddle.save(build_backbone("MobileNetV2").state_dict(), str(tmp_path / "mnv2.pdparams"))
    path = str(tmp_path / "mnv2.pdparams")
    with pytest.raises(ValueError, match=r"checkpoint .*mnv2.pdparams does not fit model "
                                         r"ReIDNet\(PPLCNet_x1_0, pooling=avg, embedding_dim=512"):
        load_weights(ReIDNet("PPLCNet_x1_0"), path)


def test_bad_paths_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither .*nowhere nor .*nowhere.pdparams exists"):
        read_state(str(tmp_path / "nowhere"))
    (tmp_path / "notes.pdparams").write_text("not a pickle")
    with pytest.raises(ValueError, match="cannot read .*notes.pdparams as a Paddle .pdparams file"):
        read_state(str(tmp_path / "notes.pdparams"))
    with pytest.raises(ValueError, match="holds notes.pdparams; pass one of those files"):
        read_state(str(tmp_path))
    (tmp_path / "notes.pdparams").unlink()
    (tmp_path / "README").write_text("hello")
    with pytest.raises(ValueError, match="README is not a Paddle 1.x LoDTensor file"):
        read_state(str(tmp_path))


# --- Paddle 1.x directories -------------------------------------------------------------

@pytest.mark.parametrize("name", ["ResNet50_vd", "MobileNetV3_small_x1_0", "MobileNetV2", "GhostNet_x1_0"])
def test_paddle1_directory_round_trip(tmp_path, name):
    """A 1.x directory named by 1.x names (plus the 1.x classifier) loads every backbone tensor."""
    source = build_backbone(name)
    legacy = source.legacy_param_names
    state = {legacy[key]: t.numpy() + 0.5 for key, t in source.state_dict().items()}  # differ from init
    state["fc_0.w_0"] = np.zeros((4, 3), np.float32)  # the ImageNet classifier, not in our backbone
    write_paddle1_dir(str(tmp_path / "pretrained"), state)

    net = ReIDNet(name)
    report = load_weights(net, str(tmp_path / "pretrained"), verbose=False)
    assert len(report.loaded) == len(legacy) and report.unexpected == ["fc_0.w_0"]
    assert sorted(report.missing) == ["bnneck._mean", "bnneck._variance", "bnneck.bias", "bnneck.weight"]
    for key, tensor in net.backbone.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), state[legacy[key]], err_msg=key)
