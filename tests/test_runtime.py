import io
import os

import pytest

from metric_learning import runtime


def test_cpu_env_defaults_respect_user_choice():
    env = {"OMP_NUM_THREADS": "3"}
    chosen = runtime.configure_cpu_env(env)
    assert env["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in chosen


def test_cpu_env_sets_threads_when_missing():
    env = {}
    runtime.configure_cpu_env(env)
    assert int(env["OMP_NUM_THREADS"]) >= 1


def test_use_gpu_without_cuda_falls_back_to_cpu_with_one_warning():
    import paddle

    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("a GPU is available here")
    with pytest.warns(UserWarning, match="running on CPU") as caught:
        assert runtime.select_device(True) == "cpu"
    assert len(caught) == 1
    assert runtime.select_device(False) == "cpu"


@pytest.mark.parametrize("verbose", [False, True])
def test_third_party_notices_are_hidden_unless_verbose(verbose, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import metric_learning, paddle, faiss, logging\n"
            "from metric_learning.models.reid_net import build_model\n"
            "build_model('MobileNetV3_small_x1_0')\n")   # ppcls's init_res notice
    env = {k: v for k, v in os.environ.items() if k not in ("PADDLE_REID_VERBOSE", "GLOG_minloglevel")}
    env["OMP_NUM_THREADS"] = "2"   # Paddle's notice is printed for any value above 1
    argv = [sys.executable, "-c", code] + (["--verbose"] if verbose else [])
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    err = done.stderr + done.stdout   # ppcls logs to stdout
    notices = ("OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY", "Loading faiss", '"init_res" will be')
    if verbose:
        assert all(notice in err for notice in notices), err
    else:
        assert err == "", err


def test_dropped_lines_are_exactly_the_listed_ones():
    out = io.StringIO()
    stream = runtime._DropLines(out, ("WARNING: OMP",))
    print("keep 1", file=stream)
    print("WARNING: OMP_NUM_THREADS set to 2", file=stream)
    stream.write("keep 2 WARNING: OMP\npartial")
    stream.flush()
    assert out.getvalue() == "keep 1\nkeep 2 WARNING: OMP\npartial"
