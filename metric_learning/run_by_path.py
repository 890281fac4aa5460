"""Imported first by a script run by its path: ``python metric_learning/eval.py`` from the repository root, or
``python eval.py`` inside metric_learning/ as the classic notebook does (``%cd metric_learning``).

Python then puts the script's folder first on sys.path, where the package cannot be imported and our subpackage
names (``data``, ``models``, ``config`` ...) would shadow third-party modules; this puts the repository root there
instead. Run as console scripts (``pip install -e .``: ``reid-eval`` ...) or with ``python -m`` the scripts
do not import it.
"""
import os
import sys

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
if os.path.abspath(sys.path[0] or os.getcwd()) == PACKAGE_DIR:
    sys.path[0] = os.path.dirname(PACKAGE_DIR)
