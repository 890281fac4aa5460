import argparse
import os

import pytest

from metric_learning.config import flags
from conftest import ROOT


def test_str2bool_accepts_notebook_strings():
    assert flags.str2bool("True") is True
    assert flags.str2bool("False") is False
    with pytest.raises(argparse.ArgumentTypeError):
        flags.str2bool("maybe")


def test_parse_image_shape():
    assert flags.parse_image_shape("3,256,128") == (3, 256, 128)
    with pytest.raises(argparse.ArgumentTypeError, match="image_shape"):
        flags.parse_image_shape("3,256")


def test_default_paths_are_in_the_repository_whatever_the_working_directory():
    assert flags.in_repo("output") == os.path.join(ROOT, "output")
