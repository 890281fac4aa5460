"""Backbone registry: every backbone builds, trains a step, and computes PaddleClas's own trunk."""
import hashlib
import json

import numpy as np
import paddle
import pytest

import paddleclas.ppcls.arch.backbone as paddleclas_backbones
from metric_learning.models.backbones import BACKBONES, backbone_names, build_backbone, freeze_stages, trunk_stages

PADDLECLAS_CHANNELS = {"ResNet50_vd": 2048, "GhostNet_x1_0": 960, "MobileNetV3_large_x1_0": 960,
                       "MobileNetV3_small_x1_0": 576, "MobileNetV2": 1280, "PPLCNet_x1_0": 512,
                       "ShuffleNetV2_x0_5": 192}
OSNET_CHANNELS = {"OSNet_x1_0": 512, "OSNet_x0_75": 384, "OSNet_x0_5": 256, "OSNet_x0_25": 128}
EXPECTED_CHANNELS = {**PADDLECLAS_CHANNELS, **OSNET_CHANNELS}


def _input(seed=0, shape=(2, 3, 64, 32)):
    return paddle.to_tensor(np.random.RandomState(seed).randn(*shape).astype("float32"))


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANNELS))
def test_backbone_trains_one_step_at_small_input(name):
    paddle.seed(0)
    net = build_backbone(name, last_stride=1)
    assert net.out_channels == EXPECTED_CHANNELS[name]
    params = net.parameters()
    before = [p.numpy().copy() for p in params]
    fmap = net(_input())
    # 64x32 input, total stride 16 with last_stride=1 (OSNet: 8, its published stride being 16)
    assert fmap.shape == [2, EXPECTED_CHANNELS[name]] + ([8, 4] if name in OSNET_CHANNELS else [4, 2])
    fmap.mean().backward()
    # OSNet's fc-512 embedding runs after the pooling, in ReIDNet, not in the trunk
    trainable = [p for key, p in net.named_parameters() if not p.stop_gradient and not key.startswith("fc.")]
    assert all(p.grad is not None for p in trainable), "every trainable parameter takes part in the trunk"
    paddle.optimizer.SGD(learning_rate=0.1, parameters=params).step()
    changed = sum(not np.array_equal(b, p.numpy()) for b, p in zip(before, params))
    assert changed >= len(trainable) // 2


def test_last_stride_two_halves_the_final_map():
    net = build_backbone("MobileNetV3_small_x1_0", last_stride=2)
    net.eval()
    assert net(_input()).shape == [2, 576, 2, 1]
    with pytest.raises(ValueError, match="last_stride must be 1 or 2"):
        build_backbone("MobileNetV2", last_stride=4)


def _paddleclas_head(name, net, fmap):
    """PaddleClas's forward from the cut point on (copied from its sources, eval mode)."""
    if name == "ResNet50_vd":
        return net.fc(net.flatten(net.avg_pool(fmap)))
    if name == "GhostNet_x1_0":
        return net.fc_1(paddle.flatten(net.fc_0(net.pool2d_gap(fmap)), 1))
    if name.startswith("MobileNetV3"):
        return net.fc(net.flatten(net.hardswish(net.last_conv(net.avg_pool(fmap)))))
    if name == "MobileNetV2":
        return net.out(paddle.flatten(net.pool2d_avg(fmap), 1))
    if name == "PPLCNet_x1_0":
        return net.fc(net.flatten(net.act(net.last_conv(net.avg_pool(fmap)))))
    if name == "ShuffleNetV2_x0_5":   # its 1x1 conv5 runs on the map, before the pool; we cut before it
        return net._fc(paddle.flatten(net._pool2d_avg(net._last_conv(fmap)), start_axis=1, stop_axis=-1))
    raise AssertionError(name)


HEAD_PREFIXES = ("fc", "out", "last_conv", "_last_conv", "_fc")


@pytest.mark.filterwarnings("ignore:Skip loading")  # the reference's classifier keeps its init: expected
@pytest.mark.parametrize("name", sorted(PADDLECLAS_CHANNELS))
def test_trunk_is_paddleclas_forward_up_to_the_cut(name):
    """Our map followed by PaddleClas's own head gives PaddleClas's logits: nothing skipped or added."""
    ours = build_backbone(name, last_stride=2)
    with paddle.utils.unique_name.guard("reference_"):
        reference = getattr(paddleclas_backbones, name)()
    missing, unexpected = reference.set_state_dict(ours.state_dict())
    assert not unexpected and all(k.startswith(HEAD_PREFIXES) for k in missing)
    reference.eval()
    ours.eval()
    x = _input(1)
    with paddle.no_grad():
        expected = reference(x).numpy()
        got = _paddleclas_head(name, reference, ours(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not any(k.startswith(HEAD_PREFIXES) for k in ours.state_dict()), \
        "classifier weights are removed from the backbone"


def test_ghostnet_and_mobilenetv2_build_twice_in_one_process():
    # Both name parameters explicitly; a second unguarded build raises in Paddle.
    for name in ("GhostNet_x1_0", "MobileNetV2"):
        first, second = build_backbone(name), build_backbone(name)
        assert first.state_dict().keys() == second.state_dict().keys()


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ValueError) as err:
        build_backbone("ResNet51")
    message = str(err.value)
    assert "ResNet51" in message
    for name in BACKBONES:
        assert name in message
    assert backbone_names() == sorted(EXPECTED_CHANNELS)


def test_legacy_names_follow_the_paddle1_sources():
    """Expected names worked out by hand from PaddleClas 1.x/2.0 resnet_vd.py and mobilenet_v3.py."""
    resnet = build_backbone("ResNet50_vd").legacy_param_names
    assert resnet["stem.0.conv.weight"] == "conv1_1_weights"
    assert resnet["stem.0.bn.weight"] == "bnv1_1_scale"  # "bn" + "conv1_1"[3:]
    assert resnet["stem.2.bn._variance"] == "bnv1_3_variance"
    assert resnet["blocks.0.short.conv.weight"] == "res2a_branch1_weights"
    assert resnet["blocks.3.conv1.bn._mean"] == "bn3a_branch2b_mean"
    assert resnet["blocks.12.conv0.bn.bias"] == "bn4f_branch2a_offset"  # stages hold 3, 4, 6, 3 blocks
    assert resnet["blocks.13.short.bn._mean"] == "bn5a_branch1_mean"
    assert resnet["blocks.15.conv2.conv.weight"] == "res5c_branch2c_weights"
    assert len(resnet) == len(set(resnet.values())) == 275  # every tensor, no two alike

    mnv3 = build_backbone("MobileNetV3_large_x1_0").legacy_param_names
    assert mnv3["conv.conv.weight"] == "conv1_weights"
    assert mnv3["conv.bn._mean"] == "conv1_bn_mean"
    assert mnv3["blocks.3.mid_se.conv1.bias"] == "conv5_se_1_offset"
    assert mnv3["blocks.3.mid_se.conv2.weight"] == "conv5_se_2_weights"
    assert mnv3["blocks.12.bottleneck_conv.bn.weight"] == "conv14_depthwise_bn_scale"
    assert mnv3["last_second_conv.conv.weight"] == "conv_last_weights"
    assert len(mnv3) == len(set(mnv3.values())) == 267

    mnv2 = build_backbone("MobileNetV2").legacy_param_names  # PaddleClas's ParamAttr names
    assert mnv2["conv2._first_block._expand_conv._conv.weight"] == "conv2_1_expand_weights"
    assert mnv2["conv3.conv3_2._bottleneck_conv._batch_norm._variance"] == "conv3_2_dwise_bn_variance"
    assert build_backbone("PPLCNet_x1_0").legacy_param_names == {}
    shufflenet = build_backbone("ShuffleNetV2_x0_5").legacy_param_names  # PaddleClas's ParamAttr names
    assert shufflenet["_conv1._batch_norm.weight"] == "stage1_conv_bn_scale"
    assert shufflenet["2_1._conv_dw_1._conv.weight"] == "stage_2_1_conv4_weights"
    assert shufflenet["4_4._conv_linear._batch_norm._variance"] == "stage_4_4_conv3_bn_variance"
    assert len(shufflenet) == len(set(shufflenet.values())) == 275


def test_stages_group_units_by_output_resolution():
    net = build_backbone("MobileNetV2", last_stride=2)
    stages = trunk_stages(net)
    # conv1 + the c=16 blocks at 1/2, c=24 at 1/4, c=32 at 1/8, c=64,96 at 1/16, c=160,320 + conv9 at 1/32
    assert [len(stage) for stage in stages] == [2, 1, 1, 2, 3]
    assert sum(stages, []) == net.trunk_units
    # last stride 1 keeps the c=160 stage at 1/16, so it joins the previous stage
    assert [len(stage) for stage in trunk_stages(build_backbone("MobileNetV2", last_stride=1))] == [2, 1, 1, 5]


def test_frozen_stages_keep_weights_and_statistics_and_the_rest_trains():
    paddle.seed(1)
    net = build_backbone("MobileNetV3_small_x1_0", last_stride=1)
    frozen_units = sum(trunk_stages(net)[:2], [])
    frozen_tensors = {id(t) for unit in frozen_units for t in unit.state_dict().values()}
    assert freeze_stages(net, 2) == sum(int(np.prod(p.shape)) for u in frozen_units for p in u.parameters()) > 0
    state = net.state_dict()
    frozen_keys = {key for key, tensor in state.items() if id(tensor) in frozen_tensors}
    assert len(frozen_keys) == sum(len(unit.state_dict()) for unit in frozen_units) >= 8
    before = {key: tensor.numpy().copy() for key, tensor in state.items()}

    net.train()
    opt = paddle.optimizer.Momentum(0.1, parameters=[p for p in net.parameters() if not p.stop_gradient],
                                    weight_decay=1e-2)
    for step in range(2):
        net(_input(step, shape=(4, 3, 64, 32))).mean().backward()
        opt.step()
        opt.clear_grad()
    after = net.state_dict()
    for key in frozen_keys:   # weights and BN running statistics alike
        np.testing.assert_array_equal(after[key].numpy(), before[key], err_msg=key)
    trained = set(after) - frozen_keys
    changed = [key for key in trained if not np.array_equal(after[key].numpy(), before[key])]
    assert len(changed) > 0.9 * len(trained)
    # net.train() switched every layer to training; the frozen ones went back to inference
    assert not any(layer.training for unit in frozen_units for layer in [unit] + unit.sublayers())
    assert all(layer.training for unit in net.trunk_units[len(frozen_units):] for layer in unit.sublayers())


def test_freezing_every_stage_is_refused_with_the_flag_name():
    net = build_backbone("MobileNetV2", last_stride=1)
    with pytest.raises(ValueError, match=r"--freeze_stages 4: MobileNetV2 \(last_stride 1\) has 4 stages"):
        freeze_stages(net, 4)


# Every backbone's (state-dict key, shape, Paddle 1.x name) list as built before backbones were wrapped in a
# Backbone layer (commit 2b039c1, which patched the PaddleClas network in place): (count, sha1 prefix of the JSON).
# Checkpoints, PaddleClas .pdparams, Paddle 1.x directories and the torchreid converter all load by these names.
STATE_NAMES_BEFORE_THE_WRAPPER = {
    "GhostNet_x1_0": (428, "e4a324a8cf654998"), "MobileNetV2": (265, "194dacbf4829ebfb"),
    "MobileNetV3_large_x1_0": (267, "085a7029f26d50ba"), "MobileNetV3_small_x1_0": (211, "33716e4bb9726ab2"),
    "OSNet_x0_25": (485, "7161f350cdc761d6"), "OSNet_x0_5": (485, "fe859bdaea08f8fa"),
    "OSNet_x0_75": (485, "a42d79fbe9605007"), "OSNet_x1_0": (485, "7fc021882db5f70d"),
    "PPLCNet_x1_0": (143, "ef36dd9d64e8c49a"), "ResNet50_vd": (275, "81eace0984f5b058"),
    # registered after the wrapper, pinned as first registered: the ShuffleNetV2 converter writes these names
    "ShuffleNetV2_x0_5": (275, "4008d5b18e89c26d"),
}


@pytest.mark.parametrize("name", sorted(STATE_NAMES_BEFORE_THE_WRAPPER))
def test_parameter_names_are_those_of_the_network_before_it_was_wrapped(name):
    net = build_backbone(name, last_stride=1)
    rows = [[key, list(t.shape), net.legacy_param_names.get(key, "")] for key, t in net.state_dict().items()]
    assert (len(rows), hashlib.sha1(json.dumps(rows).encode()).hexdigest()[:16]) == STATE_NAMES_BEFORE_THE_WRAPPER[name]
    assert set(BACKBONES) == set(STATE_NAMES_BEFORE_THE_WRAPPER)
