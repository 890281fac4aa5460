"""OSNet: structure against the paper's / torchreid's layout, the torchreid converter, and parity."""
import os

import numpy as np
import paddle
import pytest

from metric_learning import train_elem
from metric_learning.data import transforms
from metric_learning.engine import build
from metric_learning.models import checkpoint
from metric_learning.models.checkpoint import load_model_for_eval
from metric_learning.models.osnet import OSNET_WIDTHS
from metric_learning.models.reid_net import build_model
from metric_learning.models.torch_weights import convert_torchreid_osnet, torch_state_dict
from tests.torch_files import write_state_dict_zip
from conftest import shared_weights_file


def _osnet_parameter_count(c0, c2, c3, c4, feature_dim=512):
    """Trainable parameters of torchreid's OSNet, counted from its description layer by layer."""
    def bn(c):
        return 2 * c

    def block(cin, cout):
        mid = cout // 4
        lite = mid * mid + 9 * mid + bn(mid)            # 1x1 + depthwise 3x3 + BN
        gate = 2 * mid * (mid // 16) + mid // 16 + mid  # two 1x1 convs with bias, reduction 16
        down = cin * cout + bn(cout) if cin != cout else 0
        return cin * mid + bn(mid) + 10 * lite + gate + mid * cout + bn(cout) + down

    def stage(cin, cout, transition):
        return block(cin, cout) + block(cout, cout) + (cout * cout + bn(cout) if transition else 0)

    stem = 3 * 49 * c0 + bn(c0)
    trunk = stage(c0, c2, True) + stage(c2, c3, True) + stage(c3, c4, False) + c4 * c4 + bn(c4)
    fc = c4 * feature_dim + feature_dim + bn(feature_dim)
    return stem + trunk + fc


def test_x0_25_has_torchreids_parameter_count():
    net = build_model("OSNet_x0_25", last_stride=2, bnneck=False)
    count = sum(int(np.prod(p.shape)) for p in net.parameters() if p.trainable)
    assert count == 201864 == _osnet_parameter_count(*OSNET_WIDTHS["OSNet_x0_25"])


@pytest.mark.parametrize("name", sorted(OSNET_WIDTHS))
def test_every_width_matches_the_layer_by_layer_count_and_gives_512d(name):
    net = build_model(name, last_stride=2, bnneck=False)
    assert sum(int(np.prod(p.shape)) for p in net.parameters() if p.trainable) == \
        _osnet_parameter_count(*OSNET_WIDTHS[name])
    net.eval()
    with paddle.no_grad():
        assert net(paddle.randn([2, 3, 64, 32])).shape == [2, 512]
    # stride 16 with the published last stride 2, 8 with last stride 1
    assert net.backbone(paddle.zeros([1, 3, 256, 128])).shape[2:] == [16, 8]
    assert build_model(name, last_stride=1).backbone(paddle.zeros([1, 3, 256, 128])).shape[2:] == [32, 16]


def _as_torchreid_state(net, classes=5, seed=0):
    """A torchreid-named state dict holding ``net``'s (randomised) weights, plus a classifier."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, tensor in net.backbone.state_dict().items():
        key = "backbone." + key
        array = rng.normal(0.5 if key.endswith("_variance") else 0.0, 0.1, tensor.shape).astype(np.float32)
        if key.endswith("_variance"):
            array = np.abs(array) + 0.5
        tensor.set_value(array)
        name = key[len("backbone."):].replace("._mean", ".running_mean").replace("._variance", ".running_var")
        state[name] = array.T if array.ndim == 2 else array
        if key.endswith("._variance"):
            state[name.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
    state["classifier.weight"] = rng.normal(0, 0.1, (classes, 512)).astype(np.float32)
    state["classifier.bias"] = np.zeros(classes, np.float32)
    return state


@pytest.mark.parametrize("form", ["bare", "state_dict", "module_prefix"])
def test_converter_reads_torchreids_checkpoint_forms_and_reproduces_the_network(tmp_path, form):
    source = build_model("OSNet_x0_25", last_stride=2, bnneck=False)
    state = _as_torchreid_state(source)
    if form == "module_prefix":
        state = {"module." + key: value for key, value in state.items()}
    wrap = (lambda sd: {"state_dict": sd, "epoch": 150}) if form == "state_dict" else (lambda sd: sd)
    write_state_dict_zip(str(tmp_path / "osnet.pth"), state, wrap)
    logged = []
    directory = convert_torchreid_osnet(str(tmp_path / "osnet.pth"), str(tmp_path / "ckpt"), log=logged.append)
    assert "OSNet_x0_25" in logged[0] and "loaded 485 tensors" in logged[0] and "classifier 5 classes" in logged[0]
    assert any("skipped 80 (BN step counter" in line for line in logged)
    assert any("classifier.bias" in line for line in logged)
    converted = load_model_for_eval(directory)
    source.eval()
    x = paddle.to_tensor(np.random.default_rng(1).normal(size=(2, 3, 64, 32)).astype(np.float32))
    with paddle.no_grad():
        np.testing.assert_allclose(converted(x).numpy(), source(x).numpy(), rtol=1e-5, atol=1e-5)
    criterion = paddle.load(os.path.join(directory, checkpoint.CRITERION_FILE))
    np.testing.assert_array_equal(criterion["classification.weight"].numpy(),
                                  state[("module." if form == "module_prefix" else "") + "classifier.weight"])


def test_converter_names_the_first_tensor_of_another_width(tmp_path):
    write_state_dict_zip(str(tmp_path / "x025.pth"), _as_torchreid_state(build_model("OSNet_x0_25", last_stride=2)))
    with pytest.raises(ValueError, match=r"tensor conv1\.conv\.weight is \[16, 3, 7, 7\].*\[32, 3, 7, 7\]"):
        convert_torchreid_osnet(str(tmp_path / "x025.pth"), str(tmp_path / "out"), model_name="OSNet_x0_5")
    assert not os.path.exists(tmp_path / "out")


def test_converter_refuses_a_state_dict_of_another_architecture():
    with pytest.raises(ValueError, match="not a torchreid OSNet"):
        from metric_learning.models.torch_weights import torchreid_osnet_width

        torchreid_osnet_width({"features.0.weight": np.zeros((32, 3, 3, 3), np.float32)}, "mobilenet.pth")
    with pytest.raises(ValueError, match="holds no tensor state dict"):
        torch_state_dict({"epoch": 3}, "opt.pth")


def test_truncated_pth_is_a_clear_error(tmp_path):
    write_state_dict_zip(str(tmp_path / "full.pth"), _as_torchreid_state(build_model("OSNet_x0_25", last_stride=2)))
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth"):
        convert_torchreid_osnet(str(tmp_path / "cut.pth"), str(tmp_path / "out"))


@pytest.mark.parametrize("dataset", ["market1501", "msmt17"])
def test_converted_torchreid_model_gives_torchreids_features(tmp_path, dataset):
    """torchreid 0.2.5's own eval-mode features of 32 Market query crops, to 1e-4."""
    reference = np.load(shared_weights_file("reference", "osnet_x0_25_%s_query32.npz" % dataset))
    directory = convert_torchreid_osnet(shared_weights_file("osnet_x0_25_%s.pth" % dataset), str(tmp_path / "ckpt"),
                                        log=lambda *_: None)
    net = load_model_for_eval(directory)
    net_input = transforms.NETWORK_INPUT   # torchreid's too: RGB, /255, ImageNet mean / std
    mean, std = np.float32(net_input["mean"]), np.float32(net_input["std"])
    images = ((reference["input_uint8"] * np.float32(net_input["pixel_scale"]) - mean) / std).transpose(0, 3, 1, 2)
    from metric_learning.models import fastpath

    for accelerated in (False, True):  # Paddle's kernels, then the training fast path
        if accelerated:
            fastpath.accelerate(net)
        with paddle.no_grad():
            features = net(paddle.to_tensor(np.ascontiguousarray(images))).numpy()
        assert np.abs(features - reference["features"]).max() <= 1e-4


def test_converted_checkpoint_initialises_training_on_the_synthetic_set(tmp_path, synthetic_root):
    write_state_dict_zip(str(tmp_path / "osnet.pth"), _as_torchreid_state(build_model("OSNet_x0_25", last_stride=2)))
    directory = convert_torchreid_osnet(str(tmp_path / "osnet.pth"), str(tmp_path / "ckpt"), log=lambda *_: None)
    args = train_elem.parse_args(["--model", "OSNet_x0_25", "--last_stride", "2", "--image_shape", "3,64,32",
                                  "--pretrained_model", directory, "--synthetic_root", synthetic_root,
                                  "--model_save_dir", str(tmp_path / "run"), "--train_batch_size", "16",
                                  "--samples_each_class", "4", "--triplet_weight", "1.0", "--total_iter_num", "3",
                                  "--display_iter_step", "1", "--freeze_stages", "1", "--optimizer", "adam",
                                  "--lr", "0.0003", "--loader_threads", "1"])
    logged = []
    trainer = build.build_trainer(args, train_elem.build_criterion, log=logged.append)
    loaded = trainer.net.state_dict()
    reference = paddle.load(os.path.join(directory, checkpoint.MODEL_FILE))
    np.testing.assert_array_equal(loaded["backbone.conv4.1.conv2a.conv2.weight"].numpy(),
                                  reference["backbone.conv4.1.conv2a.conv2.weight"].numpy())
    assert any("classifier not reused" in line for line in logged)  # 5 classes vs the synthetic set's
    before = loaded["backbone.conv4.1.conv2a.conv2.weight"].numpy().copy()
    trainer.fit()
    after = trainer.net.state_dict()["backbone.conv4.1.conv2a.conv2.weight"].numpy()
    assert np.abs(after - before).max() > 0
    assert os.path.isfile(os.path.join(str(tmp_path / "run"), "OSNet_x0_25", "latest", checkpoint.MODEL_FILE))
