"""--use_visualdl True: the scalars of train_log.jsonl reach a VisualDL LogWriter at their iterations; without
visualdl the run stops before any work with the command that installs it."""
import json
import subprocess
import sys

import pytest

from metric_learning import errors, train_elem
from metric_learning.engine import build, dashboard
from conftest import ROOT

# A stand-in for visualdl's LogWriter that records what it is given.
FAKE_VISUALDL = '''
class LogWriter:
    instances = []

    def __init__(self, logdir, **options):
        self.logdir, self.scalars, self.closed = logdir, [], False
        LogWriter.instances.append(self)

    def add_scalar(self, tag, value, step, walltime=None):
        self.scalars.append((tag, value, step))

    def close(self):
        self.closed = True
'''

RUN = ["--model", "MobileNetV3_small_x1_0", "--image_shape", "3,64,32", "--train_batch_size", "16",
       "--samples_each_class", "4", "--triplet_weight", "1", "--loader_threads", "1", "--total_iter_num", "4",
       "--display_iter_step", "2", "--test_iter_step", "4"]


@pytest.fixture
def fake_visualdl(tmp_path, monkeypatch):
    package = tmp_path / "site" / "visualdl"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_VISUALDL)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("visualdl", None)
    import visualdl

    yield visualdl
    sys.modules.pop("visualdl", None)


def test_every_logged_scalar_is_written_at_its_iteration(fake_visualdl, synthetic_root, tmp_path):
    args = train_elem.parse_args(RUN + ["--synthetic_root", synthetic_root, "--model_save_dir", str(tmp_path / "runs"),
                                        "--use_visualdl", "True"])
    build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None).fit()
    run_dir = tmp_path / "runs" / args.model
    writer, = fake_visualdl.LogWriter.instances
    assert writer.logdir == str(run_dir / dashboard.FOLDER) and writer.closed

    expected = []
    with open(run_dir / "train_log.jsonl") as log:
        for record in map(json.loads, log):
            if "eval" in record:
                expected += [("eval/" + key, record["eval"][key], record["iter"])
                             for key in ("rank1", "rank5", "rank10", "mAP", "mINP")]
            else:
                expected += [("train/" + key, value, record["iter"]) for key, value in record.items() if key != "iter"]
    assert sorted(writer.scalars) == sorted(expected)
    steps = {}
    for tag, _, step in writer.scalars:
        steps.setdefault(tag, []).append(step)
    assert steps["train/loss"] == steps["train/softmax_loss"] == steps["train/triplet_loss"] == [2, 4]
    assert steps["train/lr"] == steps["train/acc"] == steps["train/images_per_s"] == [2, 4]
    assert steps["eval/rank1"] == steps["eval/mAP"] == [4]


def test_without_visualdl_nothing_is_generated_and_the_message_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "visualdl", None)     # import visualdl now raises ImportError
    synthetic = tmp_path / "synthetic"
    args = train_elem.parse_args(RUN + ["--synthetic_root", str(synthetic), "--model_save_dir", str(tmp_path / "runs"),
                                        "--use_visualdl", "True"])
    with pytest.raises(errors.ConfigError, match=r"--use_visualdl True needs the visualdl package.*`pip install "
                                                 r"visualdl==2\.5\.3`"):
        build.build_trainer(args, train_elem.build_criterion, log=lambda *_: None)
    assert not synthetic.exists() and not (tmp_path / "runs").exists()


def test_train_pair_cli_refuses_the_flag_in_one_line_without_visualdl(tmp_path):
    code = ("import sys; sys.modules['visualdl'] = None\n"
            "from metric_learning import train_pair\nfrom metric_learning.errors import run_cli\n"
            "run_cli(train_pair.main, sys.argv[1:])")
    out = subprocess.run([sys.executable, "-c", code, "--synthetic_root", str(tmp_path / "synthetic"),
                          "--model_save_dir", str(tmp_path / "runs"), "--use_visualdl", "True"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: --use_visualdl True needs") and "pip install visualdl==2.5.3" in lines[0]
    assert not (tmp_path / "synthetic").exists()
