"""Part heads (PCB, MGN): stripes worked out by hand, feature and classifier counts and shapes, triplet on MGN's
global features only, the parameter count of MGN on ResNet50_vd from its description, weights of the copies."""
import argparse

import numpy as np
import paddle
import pytest

from metric_learning import train_elem
from metric_learning.losses.combined import PartsLoss
from metric_learning.models import weights
from metric_learning.models.heads import (MGNNet, PCBNet, check_input_height, head_flag_error, pool_stripes,
                                          stripe_bounds)
from metric_learning.models.reid_net import build_model

BACKBONE = "OSNet_x0_25"   # 128 channels; output stride 16 at its original strides, 8 with the last one at 1
SHAPE = (3, 96, 32)
MGN_NAMES = ("global", "p2_global", "p3_global", "p2_part1", "p2_part2", "p3_part1", "p3_part2", "p3_part3")


def _input(n=4, seed=0, shape=SHAPE):
    return paddle.to_tensor(np.random.RandomState(seed).randn(n, *shape).astype("float32"))


def _criterion_args(**flags):
    values = dict(loss_name="softmax", label_smoothing=0.1, triplet_weight=0.0, margin=0.3, head="mgn",
                  teacher_model=None, distill_temperature=0.1, distill_weight=1.0)
    values.update(flags)
    return argparse.Namespace(**values)


# ----- stripes -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("height, stripes, bounds", [
    (24, 6, [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24)]),   # PCB at 384x128: 4 rows each
    (24, 3, [(0, 8), (8, 16), (16, 24)]),                               # MGN's part-3 at 384x128
    # uneven, edges floor(i * 8 / 6) = 0, 1, 2, 4, 5, 6, 8: the two taller stripes are spread, none overlap
    (8, 6, [(0, 1), (1, 2), (2, 4), (4, 5), (5, 6), (6, 8)]),
    (7, 3, [(0, 2), (2, 4), (4, 7)]),                                   # floor(7/3) = 2, floor(14/3) = 4
    (5, 5, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_stripe_bounds_worked_out_by_hand(height, stripes, bounds):
    assert stripe_bounds(height, stripes) == bounds


def test_more_stripes_than_rows_names_the_flags():
    with pytest.raises(ValueError, match=r"6 stripes need a feature map at least 6 rows high, this one has 4.*"
                                         r"--image_shape.*--num_parts"):
        stripe_bounds(4, 6)


def test_pooled_stripes_of_a_hand_made_map():
    # one channel, 7 rows x 2 columns, value 10 * row + column: rows 0-1 | 2-3 | 4-6 (see the bounds above)
    fmap = paddle.to_tensor((10 * np.arange(7)[:, None] + np.arange(2)[None, :]).astype("float32")[None, None])
    averages = [p.item() for p in pool_stripes(fmap, 3, "avg")]
    maxima = [p.item() for p in pool_stripes(fmap, 3, "max")]
    assert averages == [(0 + 1 + 10 + 11) / 4, (20 + 21 + 30 + 31) / 4, (40 + 41 + 50 + 51 + 60 + 61) / 6]
    assert averages == [5.5, 25.5, 50.5]
    assert maxima == [11.0, 31.0, 61.0]


def test_max_pooled_stripes_pass_their_gradient_to_each_stripe_maximum_only():
    fmap = paddle.to_tensor((10 * np.arange(7)[:, None] + np.arange(2)[None, :]).astype("float32")[None, None],
                            stop_gradient=False)
    paddle.add_n(pool_stripes(fmap, 3, "max")).sum().backward()
    expected = np.zeros((7, 2), np.float32)
    expected[[1, 3, 6], 1] = 1.0   # 11, 31 and 61, the maxima of rows 0-1, 2-3 and 4-6
    np.testing.assert_array_equal(fmap.grad.numpy()[0, 0], expected)


# ----- features and classifiers ---------------------------------------------------------------------------------

def test_pcb_features_and_classifiers():
    net = build_model(BACKBONE, head="pcb", num_parts=4)
    assert isinstance(net, PCBNet) and net.embedding_dim == 4 * 256
    assert net.backbone(_input()).shape == [4, 128, 12, 4]   # the last stage at stride 1: 96 / 8 rows
    pair, classifier = net.forward_features(_input())
    assert pair == {} and list(classifier) == ["part1", "part2", "part3", "part4"]
    assert all(feature.shape == [4, 256] for feature in classifier.values())
    net.eval()
    np.testing.assert_allclose(net(_input()).numpy(), np.concatenate(
        [f.numpy() for f in net.forward_features(_input())[1].values()], axis=1), rtol=1e-6)
    criterion = train_elem.build_criterion(_criterion_args(head="pcb"), net, num_classes=11)
    assert list(criterion.classifications) == list(classifier)
    assert [list(loss.weight.shape) for loss in criterion.classifications.values()] == [[11, 256]] * 4
    assert criterion.metric is None


def test_mgn_features_classifiers_and_branch_maps():
    net = build_model(BACKBONE, head="mgn")
    assert isinstance(net, MGNNet) and net.embedding_dim == 8 * 256 == 2048
    pair, classifier = net.forward_features(_input())
    assert list(classifier) == list(MGN_NAMES) and all(f.shape == [4, 256] for f in classifier.values())
    # the triplet reads the three max-pooled global features before their reduction: the backbone's 128 channels
    assert list(pair) == ["global", "p2_global", "p3_global"] and all(f.shape == [4, 128] for f in pair.values())
    # the global branch keeps the last down-sampling (96x32 / 16 = 6x2), the part branches do not (12x4)
    shared = net.backbone(_input(), stop=net.num_shared_units)
    maps = []
    for stage in (net.backbone.trunk_units[net.num_shared_units:], net.part2_stage, net.part3_stage):
        fmap = shared
        for unit in stage:
            fmap = unit(fmap)
        maps.append(fmap.shape)
    assert maps == [[4, 128, 6, 2], [4, 128, 12, 4], [4, 128, 12, 4]]
    criterion = train_elem.build_criterion(_criterion_args(triplet_weight=1.0), net, num_classes=11)
    assert list(criterion.classifications) == list(MGN_NAMES)
    assert [list(loss.weight.shape) for loss in criterion.classifications.values()] == [[11, 256]] * 8


def test_part_heads_own_every_parameter_under_its_own_name_and_drop_osnets_fc():
    for head in ("pcb", "mgn"):
        net = build_model(BACKBONE, head=head, num_parts=4)
        names = [p.name for p in net.parameters()]
        assert len(names) == len(set(names))   # an optimiser keeps its slots by parameter name
        assert not [key for key in net.state_dict() if key.startswith("backbone.fc.")]


def _mgn_losses(triplet_weight):
    """An MGN net, its criterion and the loss terms on a batch of 3 identities x 2 images."""
    paddle.seed(0)
    net = build_model(BACKBONE, head="mgn")
    criterion = train_elem.build_criterion(_criterion_args(triplet_weight=triplet_weight), net, num_classes=3)
    labels = paddle.to_tensor(np.array([0, 0, 1, 1, 2, 2], "int64"))
    return net, criterion, criterion(*net.forward_features(_input(6)), labels)


def test_the_triplet_term_reaches_the_three_global_features_and_never_a_stripe():
    net, criterion, out = _mgn_losses(triplet_weight=1.0)
    triplet_terms = sorted(k for k in out if k.startswith("triplet_"))
    assert triplet_terms == ["triplet_global_loss", "triplet_p2_global_loss", "triplet_p3_global_loss"]
    assert sorted(k for k in out if k.startswith("softmax_")) == sorted("softmax_%s_loss" % n for n in MGN_NAMES)
    paddle.add_n([out[k] for k in triplet_terms]).backward()
    # the triplet term alone: gradient in the three branches' last stages, none in any 1x1 reduction (the
    # stripes' included) and none in the classifiers
    for stage in (net.backbone.trunk_units[-1], net.part2_stage[-1], net.part3_stage[-1]):
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in stage.parameters())
    assert all(p.grad is None for p in net.reductions.parameters())
    assert all(p.grad is None for p in criterion.parameters())


def test_parts_loss_averages_its_terms():
    _, criterion, out = _mgn_losses(triplet_weight=0.5)
    softmax = np.mean([float(out["softmax_%s_loss" % n]) for n in MGN_NAMES])
    triplet = np.mean([float(out["triplet_%s_loss" % n]) for n in MGN_NAMES[:3]])
    assert float(out["loss"]) == pytest.approx(softmax + 0.5 * triplet, rel=1e-5)
    assert isinstance(criterion, PartsLoss)


# ----- MGN on ResNet50_vd, counted from its description -------------------------------------------------------

def _bottleneck(in_channels, mid, shortcut):
    """Trainable parameters of a ResNet bottleneck: 1x1 in->mid, 3x3 mid->mid, 1x1 mid->4 mid, each + BN
    (scale and offset), and the projecting 1x1 shortcut in->4 mid + BN of a stage's first block."""
    out = 4 * mid
    params = in_channels * mid + 2 * mid + 9 * mid * mid + 2 * mid + mid * out + 2 * out
    return params + (in_channels * out + 2 * out if shortcut else 0)


def _stage(in_channels, mid, blocks):
    return _bottleneck(in_channels, mid, True) + (blocks - 1) * _bottleneck(4 * mid, mid, False)


def test_mgn_parameter_count_on_resnet50_vd_from_the_architecture():
    # ResNet50_vd's stem: three 3x3 convs 3->32->32->64, each + BN
    stem = 3 * 32 * 9 + 2 * 32 + 32 * 32 * 9 + 2 * 32 + 32 * 64 * 9 + 2 * 64
    assert stem == 28_768
    res2, res3, res4, res5 = _stage(64, 64, 3), _stage(256, 128, 4), _stage(512, 256, 6), _stage(1024, 512, 3)
    assert res5 == 6_039_552 + 2 * 4_462_592 == 14_964_736
    backbone = stem + res2 + res3 + res4 + res5
    assert backbone == 23_527_264                       # torchvision's ResNet-50 without fc, 23,508,032, + 19,232
    reduction = 2048 * 256 + 2 * 256                    # 1x1 conv without bias + BN
    # the paper's split: shared up to res_conv4_1, so the two part branches copy res_conv4_2..6 and res_conv5
    res4_after_first = 5 * _bottleneck(1024, 256, False)
    assert res4_after_first == 5_585_920
    mgn = backbone + 2 * (res4_after_first + res5) + 8 * reduction
    assert mgn == 68_826_976
    # branching at the last stage, as on the backbones the paper does not cover, would copy res_conv5 only
    assert mgn - 2 * res4_after_first == 57_655_136
    net = build_model("ResNet50_vd", head="mgn")
    # each part branch: res4b..res4f (1024 -> 256 -> 1024) and res5a..res5c, after the 11 shared units
    assert len(net.part2_stage) == 5 + 3 and len(net.backbone.trunk_units) - net.num_shared_units == 8
    assert [list(p.shape) for p in net.part2_stage[0].parameters()][0] == [256, 1024, 1, 1]
    assert sum(int(p.size) for p in net.parameters() if p.trainable) == mgn
    # and the 8 classifiers of Market-1501's 751 identities, kept by the loss: 8 x 751 x 256 = 1,538,048
    criterion = train_elem.build_criterion(_criterion_args(), net, num_classes=751)
    assert sum(int(p.size) for p in criterion.parameters()) == 1_538_048


# ----- weights ---------------------------------------------------------------------------------------------------

def test_pretrained_backbone_weights_reach_every_branch_copy(tmp_path):
    paddle.seed(1)
    source = build_model(BACKBONE, head="mgn")
    path = str(tmp_path / "backbone.pdparams")
    paddle.save(source.backbone.state_dict(), path)    # what a backbone-only (ImageNet) file holds
    paddle.seed(2)
    net = build_model(BACKBONE, head="mgn")
    report = weights.load_weights(net, path, verbose=False)
    last = source.backbone.trunk_units[-1].state_dict()
    for copy in (net.part2_stage[-1], net.part3_stage[-1]):
        for key, value in copy.state_dict().items():
            np.testing.assert_array_equal(value.numpy(), last[key].numpy())
    assert not [key for key in report.missing if key.startswith(("part2_stage.", "part3_stage."))]
    assert all(key.startswith("reductions.") for key in report.missing)
    # a file that holds the copies' own weights keeps them
    paddle.save(net.state_dict(), path)
    other = build_model(BACKBONE, head="mgn")
    weights.load_weights(other, path, verbose=False)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key].numpy(), value.numpy())


# ----- flags -----------------------------------------------------------------------------------------------------

def test_flags_that_contradict_the_head_are_named():
    assert head_flag_error("global", embedding_size=128, pooling="gem", last_stride=2) is None
    assert head_flag_error("mgn") is None and head_flag_error("pcb", num_parts=3) is None
    assert "--head must be one of global, pcb, mgn" in head_flag_error("bpm")
    assert "--num_parts must be >= 1" in head_flag_error("pcb", num_parts=0)
    assert "--embedding_size 128 --pooling gem belong to the global head" in head_flag_error(
        "mgn", embedding_size=128, pooling="gem")
    assert "--last_stride 2 applies to --head global" in head_flag_error("pcb", last_stride=2)
    with pytest.raises(ValueError, match="--bnneck False belong to the global head"):
        build_model(BACKBONE, head="pcb", bnneck=False)


def test_an_input_too_short_for_the_stripes_names_the_flags():
    net = build_model("MobileNetV3_small_x1_0", head="pcb", num_parts=6)   # output stride 16: 64 rows -> 4
    with pytest.raises(ValueError, match=r"--image_shape 3,64,32: 6 stripes need .* has 4"):
        check_input_height(net, (3, 64, 32))
    check_input_height(net, (3, 96, 32))   # 6 rows
    assert net.training


def test_frozen_stages_of_mgn_stay_in_the_shared_trunk():
    from metric_learning.models.backbones import freeze_stages

    net = build_model(BACKBONE, head="mgn")
    frozen = freeze_stages(net.backbone, 3)   # OSNet at stride 16: 5 stages, the last is every branch's own
    assert net.backbone.num_frozen_units <= net.num_shared_units and frozen > 0
    net.train()
    net(_input()).mean().backward()
    frozen_params = [p for unit in net.backbone.trunk_units[:net.backbone.num_frozen_units] for p in unit.parameters()]
    assert all(p.grad is None for p in frozen_params)
    for stage in (net.backbone.trunk_units[-1], net.part2_stage[-1], net.part3_stage[-1]):
        assert all(p.grad is not None for p in stage.parameters() if p.trainable)
