"""metric_learning.progress: a bar on a terminal or in a notebook, the plain lines elsewhere."""
import sys
import types

import numpy as np
import pytest
from PIL import Image

from metric_learning import progress
from metric_learning.evaluation import evaluator


class Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def fake_ipython(monkeypatch, shell_class):
    shell = type(shell_class, (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


def test_a_bar_on_a_terminal_or_in_a_notebook_only(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert progress.bar_wanted(Stream(True)) and not progress.bar_wanted(Stream(False))
    assert not progress.bar_wanted(object())                  # a stream without isatty
    fake_ipython(monkeypatch, "TerminalInteractiveShell")     # IPython in a terminal: the stream decides
    assert not progress.in_notebook() and not progress.bar_wanted(Stream(False))
    fake_ipython(monkeypatch, "ZMQInteractiveShell")          # a Jupyter kernel
    assert progress.in_notebook() and progress.bar_wanted(Stream(False))


def test_without_a_bar_the_log_gets_a_line_about_every_tenth():
    lines = []
    with progress.Progress(100, "embedded", unit="images", log=lines.append, bar=False) as counter:
        for _ in range(4):
            counter.update(30 if counter.done < 90 else 10)
    assert lines == ["  embedded 30 / 100 images", "  embedded 60 / 100 images", "  embedded 90 / 100 images",
                     "  embedded 100 / 100 images"]


def test_with_a_bar_tqdm_draws_it_and_the_log_stays_quiet(capsys):
    lines = []
    with progress.Progress(10, "timed", unit="runs", log=lines.append, bar=True) as counter:
        for _ in range(10):
            counter.update()
        counter.write("| a table row |")
    out, err = capsys.readouterr()
    assert lines == [] and "timed" in err and "10/10" in err
    assert out == "| a table row |\n"


@pytest.mark.parametrize("bar", [False, True])
def test_feature_extraction_reports_through_progress(tmp_path, monkeypatch, capsys, bar):
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / ("%d.png" % i)))
        Image.fromarray(np.full((8, 4, 3), 40 * i, np.uint8)).save(paths[-1])
    monkeypatch.setattr(progress, "bar_wanted", lambda stream=None: bar)
    lines = []
    feats = evaluator.extract_features(lambda batch: batch.reshape(len(batch), -1)[:, :3], paths, (3, 8, 4),
                                       batch_size=2, log=lines.append)
    assert feats.shape == (5, 3)
    if bar:
        err = capsys.readouterr().err      # tqdm redraws at most every 0.1 s: the counts shown vary
        assert lines == [] and "embedded:" in err and "/5 [" in err
    else:
        assert lines == ["  embedded 2 / 5 images", "  embedded 4 / 5 images", "  embedded 5 / 5 images"]
