"""ShuffleNetV2_x0_5: the Megvii-layout converter, against a torch model of Megvii's published layout."""
import os

import numpy as np
import paddle
import pytest

from metric_learning import train_elem
from metric_learning.engine import build
from metric_learning.models import checkpoint, fastpath
from metric_learning.models.backbones import build_backbone, trunk_stages
from metric_learning.models.checkpoint import load_model_for_eval
from metric_learning.models.reid_net import build_model
from metric_learning.models.torch_weights import (SHUFFLENET_MODEL, convert_megvii_shufflenetv2,
                                                  megvii_shufflenetv2_to_paddleclas, read_torch_file, torch_state_dict)
from tests.torch_files import write_state_dict_zip
from conftest import shared_weights_file

FASTESTDET_FILE = "shufflenetv2_x0_5_backbone_imagenet_fastestdet.pth"
STEM = 24
STAGES_X0_5 = ((48, 4), (96, 8), (192, 4))   # (output channels, blocks) of stages 2, 3, 4 (Ma et al., Table 5)
STAGES_X1_0 = ((116, 4), (232, 8), (464, 4))


def _megvii_blocks(stages):
    """``(stage, block, inp, out, stride)`` of Megvii's ShuffleV2Block constructor calls: a stride-2 block sees
    all channels, a stride-1 block half of them; every block's branch_main makes out - inp channels."""
    cin = STEM
    for stage, (channels, blocks) in enumerate(stages, start=2):
        for block in range(blocks):
            yield stage, block, cin if block == 0 else channels // 2, channels, 2 if block == 0 else 1
        cin = channels


def _megvii_state(stages=STAGES_X0_5, seed=0):
    """Random weights under Megvii's keys and shapes, with the BN step counters torch writes."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv_bn(conv, bn, cout, cin_per_group, kernel):
        fan_in = cin_per_group * kernel * kernel   # std 1 / sqrt(fan_in): activations stay of order 1
        state[conv + ".weight"] = rng.normal(0, fan_in ** -0.5, (cout, cin_per_group, kernel, kernel)).astype(np.float32)
        state[bn + ".weight"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        state[bn + ".bias"] = rng.normal(0, 0.2, cout).astype(np.float32)
        state[bn + ".running_mean"] = rng.normal(0, 0.2, cout).astype(np.float32)
        state[bn + ".running_var"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        state[bn + ".num_batches_tracked"] = np.array(7, np.int64)

    conv_bn("first_conv.0", "first_conv.1", STEM, 3, 3)
    for stage, block, inp, out, stride in _megvii_blocks(stages):
        prefix, mid = "stage%d.%d." % (stage, block), out // 2
        conv_bn(prefix + "branch_main.0", prefix + "branch_main.1", mid, inp, 1)
        conv_bn(prefix + "branch_main.3", prefix + "branch_main.4", mid, 1, 3)
        conv_bn(prefix + "branch_main.5", prefix + "branch_main.6", out - inp, mid, 1)
        if stride == 2:
            conv_bn(prefix + "branch_proj.0", prefix + "branch_proj.1", inp, 1, 3)
            conv_bn(prefix + "branch_proj.2", prefix + "branch_proj.3", inp, inp, 1)
    return state


def _megvii_torch_backbone(torch):
    """Megvii's ShuffleNetV2 backbone (ShuffleNet-Series / FastestDet ``module/shufflenetv2.py``), 0.5x, eval mode."""
    nn = torch.nn

    class ShuffleV2Block(nn.Module):
        def __init__(self, inp, out, stride):
            super().__init__()
            self.stride, mid = stride, out // 2
            self.branch_main = nn.Sequential(
                nn.Conv2d(inp, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                nn.Conv2d(mid, out - inp, 1, bias=False), nn.BatchNorm2d(out - inp), nn.ReLU())
            if stride == 2:
                self.branch_proj = nn.Sequential(
                    nn.Conv2d(inp, inp, 3, 2, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                    nn.Conv2d(inp, inp, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU())

        def forward(self, x):
            if self.stride == 2:
                return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
            # the shuffle at the block's start: even channels stay, odd ones go through branch_main
            batch, channels, height, width = x.shape
            x = x.reshape(batch * channels // 2, 2, height * width).permute(1, 0, 2)
            x = x.reshape(2, -1, channels // 2, height, width)
            return torch.cat((x[0], self.branch_main(x[1])), 1)

    class ShuffleNetV2Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.first_conv = nn.Sequential(nn.Conv2d(3, STEM, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM), nn.ReLU())
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            stages = {}
            for stage, block, inp, out, stride in _megvii_blocks(STAGES_X0_5):
                stages.setdefault(stage, []).append(ShuffleV2Block(inp, out, stride))
            for stage, blocks in stages.items():
                setattr(self, "stage%d" % stage, nn.Sequential(*blocks))

        def forward(self, x):
            return self.stage4(self.stage3(self.stage2(self.maxpool(self.first_conv(x)))))

    return ShuffleNetV2Backbone().eval()


def test_stages_for_freezing_and_the_last_stride():
    """Stem conv (1/2), max pool (1/4), then the 4, 8 and 4 blocks of stages 2-4 (1/8, 1/16, 1/32)."""
    for last_stride, sizes, final_map in ((2, [1, 1, 4, 8, 4], [8, 4]), (1, [1, 1, 4, 12], [16, 8])):
        net = build_backbone(SHUFFLENET_MODEL, last_stride=last_stride)
        assert [len(stage) for stage in trunk_stages(net)] == sizes
        net.eval()
        with paddle.no_grad():
            assert net(paddle.zeros([1, 3, 256, 128])).shape == [1, 192] + final_map


def _model_shapes():
    net = build_model(SHUFFLENET_MODEL, last_stride=2, bnneck=False)
    return {key: tuple(t.shape) for key, t in net.state_dict().items()}


def test_converter_maps_every_tensor_and_keeps_the_parameter_count(tmp_path):
    state = _megvii_state()
    state["conv_last.0.weight"] = np.zeros((1024, 192, 1, 1), np.float32)   # Megvii's full ImageNet releases
    state["classifier.0.weight"] = np.zeros((1000, 1024), np.float32)
    write_state_dict_zip(str(tmp_path / "megvii.pth"), {"module." + k: v for k, v in state.items()},
                         lambda sd: {"state_dict": sd, "epoch": 240})
    logged = []
    directory = convert_megvii_shufflenetv2(str(tmp_path / "megvii.pth"), str(tmp_path / "ckpt"), log=logged.append)
    assert "(ShuffleNetV2_x0_5): loaded 275 tensors" in logged[0]   # 55 conv + BN pairs x 5
    assert any("skipped 55 (BN step counter" in line for line in logged)
    assert any("skipped 2 (Megvii's ImageNet head" in line for line in logged)
    converted = paddle.load(os.path.join(directory, checkpoint.MODEL_FILE))
    assert set(converted) == set(_model_shapes())
    # trainable parameters (conv weights, BN scales and offsets): the weights README counts 143,136
    assert sum(int(np.prod(t.shape)) for k, t in converted.items() if not k.endswith(("_mean", "_variance"))) == 143136
    # the stem and the depthwise convs inside a branch keep their channel order; stage 2's input is the stem's
    np.testing.assert_array_equal(converted["backbone._conv1._conv.weight"].numpy(), state["first_conv.0.weight"])
    np.testing.assert_array_equal(converted["backbone.3_4._conv_dw._conv.weight"].numpy(),
                                  state["stage3.3.branch_main.3.weight"])
    np.testing.assert_array_equal(converted["backbone.2_1._conv_dw_1._batch_norm._variance"].numpy(),
                                  state["stage2.0.branch_proj.1.running_var"])
    order = megvii_shufflenetv2_to_paddleclas(state, _model_shapes(), "megvii.pth")[2]
    assert sorted(order) == list(range(192)) and list(order) != list(range(192))


def test_converter_names_the_file_that_is_not_megvii_shufflenetv2_x0_5(tmp_path):
    write_state_dict_zip(str(tmp_path / "osnet_x0_25.pth"), {"conv1.conv.weight": np.zeros((16, 3, 7, 7), np.float32)})
    with pytest.raises(ValueError, match=r"osnet_x0_25\.pth is not a ShuffleNetV2 backbone in Megvii's layout.*"
                                         r"its first tensor is conv1\.conv\.weight"):
        convert_megvii_shufflenetv2(str(tmp_path / "osnet_x0_25.pth"), str(tmp_path / "out"), log=lambda *_: None)
    write_state_dict_zip(str(tmp_path / "x1_0.pth"), _megvii_state(STAGES_X1_0))
    with pytest.raises(ValueError, match=r"x1_0\.pth does not fit the model: tensor stage2\.0\.branch_main\.0\.weight "
                                         r"is \[58, 24, 1, 1\], the model's .* is \[24, 24, 1, 1\]"):
        convert_megvii_shufflenetv2(str(tmp_path / "x1_0.pth"), str(tmp_path / "out"), log=lambda *_: None)
    extra = dict(_megvii_state(), **{"stage4.4.branch_main.0.weight": np.zeros((96, 96, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"tensor stage4\.4\.branch_main\.0\.weight \[96, 96, 1, 1\] has no counterpart"):
        megvii_shufflenetv2_to_paddleclas(extra, _model_shapes(), "five_blocks.pth")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("weights", ["generated", "fastestdet"])
def test_converted_backbone_computes_megvii_torch_model(tmp_path, weights):
    """The final map equals the torch model's, channels in the converter's order, to float rounding."""
    torch = pytest.importorskip("torch")
    if weights == "fastestdet":
        source = shared_weights_file(FASTESTDET_FILE)
        torch_state = {k: v.numpy() for k, v in torch.load(source, map_location="cpu").items()}
    else:
        source = str(tmp_path / "generated.pth")
        torch_state = _megvii_state(seed=3)
        write_state_dict_zip(source, torch_state)
    reference = _megvii_torch_backbone(torch)
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in torch_state.items()})
    directory = convert_megvii_shufflenetv2(source, str(tmp_path / "ckpt"), log=lambda *_: None)
    order = megvii_shufflenetv2_to_paddleclas(torch_state_dict(read_torch_file(source), source), _model_shapes(),
                                              source)[2]
    net = load_model_for_eval(directory)
    x = np.random.default_rng(1).normal(size=(2, 3, 256, 128)).astype(np.float32)
    with torch.no_grad():
        megvii_order = reference(torch.from_numpy(x)).numpy()
    expected = megvii_order[:, order]
    scale = np.abs(expected).max()
    assert scale > 0.5 and expected.shape == (2, 192, 8, 4)
    with paddle.no_grad():   # the channel order differs: the reordering is real
        unordered_diff = np.abs(net.backbone(paddle.to_tensor(x)).numpy() - megvii_order).max()
    assert unordered_diff > 0.1 * scale
    for accelerated in (False, True):   # Paddle's kernels, then the training fast path
        if accelerated:
            fastpath.accelerate(net)
        with paddle.no_grad():
            got = net.backbone(paddle.to_tensor(x)).numpy()
            embedding = net(paddle.to_tensor(x)).numpy()
        print("ShuffleNetV2 %s weights, fast path %s: max abs diff %.3g (largest value %.3g; %.3g in Megvii's "
              "channel order)" % (weights, accelerated, np.abs(got - expected).max(), scale, unordered_diff))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1.0, scale))
        np.testing.assert_allclose(embedding, expected.mean(axis=(2, 3)), rtol=0, atol=1e-5 * max(1.0, scale))


def test_converted_checkpoint_initialises_training_with_every_backbone_tensor(tmp_path, synthetic_root, capsys):
    write_state_dict_zip(str(tmp_path / "megvii.pth"), _megvii_state())
    directory = convert_megvii_shufflenetv2(str(tmp_path / "megvii.pth"), str(tmp_path / "ckpt"), log=lambda *_: None)
    args = train_elem.parse_args(["--model", SHUFFLENET_MODEL, "--embedding_size", "128", "--image_shape", "3,64,32",
                                  "--pretrained_model", directory, "--synthetic_root", synthetic_root,
                                  "--model_save_dir", str(tmp_path / "run"), "--train_batch_size", "16",
                                  "--samples_each_class", "4", "--loader_threads", "1"])
    trainer = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    # 275 of the backbone + the 128-d FC and the BNNeck's 4, which the ImageNet network has not
    assert "loaded 275 of 280 tensors" in capsys.readouterr().out
    reference = paddle.load(os.path.join(directory, checkpoint.MODEL_FILE))
    loaded = trainer.net.state_dict()
    for key in reference:
        np.testing.assert_array_equal(loaded[key].numpy(), reference[key].numpy(), err_msg=key)
