"""ReIDNet head: shapes, BNNeck in train/eval mode, frozen BN bias, GeM, no dropout, export."""
import argparse

import numpy as np
import paddle
import pytest

from metric_learning.models.reid_net import (GeneralizedMeanPooling, GlobalAvgPooling, ReIDNet, build_model,
                                   build_model_from_args)

BACKBONE = "MobileNetV3_small_x1_0"  # the cheapest; 576 channels


def _input(n=4, seed=0):
    return paddle.to_tensor(np.random.RandomState(seed).randn(n, 3, 64, 32).astype("float32"))


@pytest.mark.parametrize("embedding_size, dim", [(0, 576), (None, 576), (64, 64)])
def test_output_shapes(embedding_size, dim):
    net = ReIDNet(BACKBONE, embedding_size=embedding_size)
    assert net.embedding_dim == dim
    before, after = net.forward_features(_input())
    assert before.shape == after.shape == [4, dim]
    assert net(_input()).shape == [4, dim]
    assert (net.embedding is None) == (not embedding_size)


def test_bnneck_normalises_with_batch_stats_in_train_and_running_stats_in_eval():
    net = ReIDNet(BACKBONE, embedding_size=16)
    net.train()
    before, after = (t.numpy() for t in net.forward_features(_input()))
    eps = net.bnneck._epsilon
    expected = (before - before.mean(0)) / np.sqrt(before.var(0) + eps)  # weight 1, bias 0
    np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-4)
    # Paddle's running stats: momentum 0.9 from mean 0 / variance 1, biased batch variance.
    np.testing.assert_allclose(net.bnneck._mean.numpy(), 0.1 * before.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.bnneck._variance.numpy(), 0.9 + 0.1 * before.var(0), rtol=1e-4)

    net.eval()
    before, after = (t.numpy() for t in net.forward_features(_input(seed=1)))
    mean, var = net.bnneck._mean.numpy(), net.bnneck._variance.numpy()
    np.testing.assert_allclose(after, (before - mean) / np.sqrt(var + eps), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(net(_input(seed=1)).numpy(), after)


@pytest.mark.parametrize("optimizer", ["momentum", "adamw"])
def test_bnneck_bias_stays_zero_while_its_weight_learns(optimizer):
    net = ReIDNet(BACKBONE, embedding_size=16)
    params = net.parameters()
    opt = (paddle.optimizer.Momentum(0.1, parameters=params, weight_decay=5e-4) if optimizer == "momentum"
           else paddle.optimizer.AdamW(0.01, parameters=params, weight_decay=0.05))
    for step in range(3):
        feat = net(_input(seed=step))
        # a loss that pulls the BN output off zero mean, so the bias would move if trainable
        (feat - 1.0).pow(2).mean().backward()
        assert net.bnneck.weight.grad is not None  # Paddle drops it when the bias has stop_gradient
        opt.step()
        opt.clear_grad()
    np.testing.assert_array_equal(net.bnneck.bias.numpy(), np.zeros(16, np.float32))
    assert not np.allclose(net.bnneck.weight.numpy(), 1.0)


def test_no_dropout_anywhere_train_mode_is_deterministic():
    # MobileNetV3's PaddleClas head has dropout 0.2; the backbone must have lost it.
    net = ReIDNet(BACKBONE)
    net.train()
    x = _input()
    np.testing.assert_array_equal(net(x).numpy(), net(x).numpy())
    assert not [layer for layer in net.sublayers() if isinstance(layer, paddle.nn.Dropout)]


def test_gem_p1_equals_average_pooling():
    x = paddle.to_tensor(np.random.RandomState(0).rand(3, 5, 4, 2).astype("float32") + 0.01)
    np.testing.assert_allclose(GeneralizedMeanPooling(p=1.0)(x).numpy(), GlobalAvgPooling()(x).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(GlobalAvgPooling()(x).numpy(), x.numpy().mean(axis=(2, 3)), rtol=1e-6)


def test_gem_matches_formula_and_learns_p():
    data = np.random.RandomState(1).randn(2, 3, 4, 4).astype("float32")  # some negatives: clipped
    gem = GeneralizedMeanPooling(p=3.0, eps=1e-6)
    x = paddle.to_tensor(data)
    out = gem(x)
    expected = (np.maximum(data, 1e-6) ** 3).mean(axis=(2, 3)) ** (1 / 3)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)
    out.sum().backward()
    assert gem.p.grad is not None and gem.p.grad.item() != 0.0
    net = ReIDNet(BACKBONE, pooling="gem", gem_p=2.5)
    assert "pooling.p" in net.state_dict() and net.pooling.p.item() == 2.5


def test_bad_head_arguments_raise():
    with pytest.raises(ValueError, match="unknown pooling 'max'; choose one of: avg, gem"):
        ReIDNet(BACKBONE, pooling="max")
    with pytest.raises(ValueError, match="embedding_size must be >= 0"):
        ReIDNet(BACKBONE, embedding_size=-8)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model(model="ResNet9000")


def test_build_model_from_args_uses_flag_names_and_ignores_others():
    args = argparse.Namespace(model=BACKBONE, embedding_size=32, pooling="gem", last_stride=2, lr=0.1,
                              pretrained_model=None)
    net = build_model_from_args(args)
    assert net.embedding_dim == 32 and isinstance(net.pooling, GeneralizedMeanPooling)
    assert net.backbone.last_stride == 2
    assert net.description == "ReIDNet(MobileNetV3_small_x1_0, pooling=gem, embedding_dim=32, last_stride=2)"


def test_exported_static_model_reproduces_eval_embeddings(tmp_path):
    net = ReIDNet(BACKBONE, embedding_size=16)
    net.eval()
    x = _input(2)
    expected = net(x).numpy()
    static = paddle.jit.to_static(net, input_spec=[paddle.static.InputSpec([None, 3, 64, 32], "float32")],
                                  full_graph=True)
    paddle.jit.save(static, str(tmp_path / "model"))
    loaded = paddle.jit.load(str(tmp_path / "model"))
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-5, atol=1e-5)
