"""pyproject.toml: the console scripts name real entry points, and the C kernels ship as package data."""
import importlib
import os
import tomllib

from metric_learning.models import fastpath
from conftest import ROOT


def read_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_every_console_script_names_a_callable():
    scripts = read_pyproject()["project"]["scripts"]
    assert {"reid-train-elem", "reid-train-pair", "reid-eval", "reid-export", "reid-infer", "reid-search"} <= set(scripts)
    for command, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), command


def test_the_kernel_source_is_package_data_beside_its_loader():
    package_data = read_pyproject()["tool"]["setuptools"]["package-data"]
    assert package_data["metric_learning.models.fastpath"] == ["*.c"]
    assert os.path.dirname(fastpath.KERNEL_SOURCE_FILE) == os.path.dirname(fastpath.__file__)
    with open(fastpath.KERNEL_SOURCE_FILE) as f:
        assert "dw_forward" in f.read()
