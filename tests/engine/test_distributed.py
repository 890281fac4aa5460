"""Multi-process CPU training under ``python -m paddle.distributed.launch`` (gloo on CPU)."""
import os
import subprocess
import sys
import textwrap

import numpy as np

from conftest import ROOT

WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import metric_learning  # CPU defaults before paddle loads
    import numpy as np
    import paddle
    from metric_learning import train_elem
    from metric_learning.engine import build

    def save_weights(trainer, stage):
        np.savez({out!r} + "/%s%d.npz" % (stage, paddle.distributed.get_rank()),
                 **{{name: value.numpy() for name, value in trainer.net.state_dict().items()}})

    args = train_elem.parse_args({argv!r})
    with paddle.utils.unique_name.guard():
        trainer = build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
        trainer.evaluate_fn = None
        save_weights(trainer, "start")
        trainer.fit()
    save_weights(trainer, "rank")
""")


def test_two_cpu_processes_train_one_synchronised_model(synthetic_root, tmp_path):
    """Each rank seeds its own initialisation and trains on its own P x K batches, so without
    synchronisation nothing would agree. DataParallel broadcasts rank 0's weights at the start and
    all-reduces the gradients: every parameter is identical on both ranks and has moved, while the BN
    running statistics, which are not synchronised, show that the ranks saw different images."""
    argv = ["--synthetic_root", synthetic_root, "--model", "MobileNetV3_small_x1_0", "--image_shape", "3,64,32",
            "--train_batch_size", "16", "--samples_each_class", "4", "--total_iter_num", "4",
            "--optimizer", "adam", "--lr", "0.01", "--lr_strategy", "constant",
            "--model_save_dir", str(tmp_path / "run"), "--loader_threads", "1"]
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=ROOT, argv=argv, out=str(tmp_path)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                           "--log_dir", str(tmp_path / "log"), str(script)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    logs = "".join((tmp_path / "log" / name).read_text() for name in ("workerlog.0", "workerlog.1")
                   if (tmp_path / "log" / name).exists())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:] + logs[-3000:]

    ranks = [dict(np.load(tmp_path / ("rank%d.npz" % r))) for r in (0, 1)]
    trainable = [n for n in ranks[0] if not n.endswith(("_mean", "_variance"))]
    running_stats = [n for n in ranks[0] if n.endswith("_mean")]
    assert trainable and running_stats
    for name in trainable:
        np.testing.assert_allclose(ranks[0][name], ranks[1][name], rtol=0, atol=1e-6, err_msg=name)
    differing_stats = [n for n in running_stats if not np.allclose(ranks[0][n], ranks[1][n], atol=1e-6)]
    assert len(differing_stats) > len(running_stats) // 2

    start = dict(np.load(tmp_path / "start0.npz"))
    start_rank1 = dict(np.load(tmp_path / "start1.npz"))
    for name in trainable:
        np.testing.assert_array_equal(start[name], start_rank1[name], err_msg="broadcast " + name)
    moved = [n for n in trainable if not np.allclose(start[n], ranks[0][n], atol=1e-6)]
    assert len(moved) > len(trainable) // 2
