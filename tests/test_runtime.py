import argparse

import pytest

from metric_learning import cli, runtime


def test_cpu_env_defaults_respect_user_choice():
    env = {"OMP_NUM_THREADS": "3"}
    chosen = runtime.configure_cpu_env(env)
    assert env["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in chosen


def test_cpu_env_sets_threads_when_missing():
    env = {}
    runtime.configure_cpu_env(env)
    assert int(env["OMP_NUM_THREADS"]) >= 1


def test_str2bool_accepts_notebook_strings():
    assert cli.str2bool("True") is True
    assert cli.str2bool("False") is False
    with pytest.raises(argparse.ArgumentTypeError):
        cli.str2bool("maybe")


def test_parse_image_shape():
    assert cli.parse_image_shape("3,256,128") == (3, 256, 128)
    with pytest.raises(argparse.ArgumentTypeError, match="image_shape"):
        cli.parse_image_shape("3,256")


def test_use_gpu_without_cuda_falls_back_to_cpu_with_one_warning():
    import paddle

    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("a GPU is available here")
    with pytest.warns(UserWarning, match="running on CPU") as caught:
        assert runtime.select_device(True) == "cpu"
    assert len(caught) == 1
    assert runtime.select_device(False) == "cpu"
