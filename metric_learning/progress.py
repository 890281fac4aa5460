"""Progress of a long loop: a tqdm bar where a person watches it, plain log lines everywhere else.

A bar is shown when stderr is a terminal or the code runs in a Jupyter kernel. Redirected to a file or a CI
log, a bar would be a stream of carriage returns, so there the loop keeps its plain lines (about one every
10%), or stays silent when it was given no ``log``. The bar is tqdm's text bar in both places: its notebook
widget needs ipywidgets, which the pinned environment does not have, and Jupyter draws the text bar in place.
"""
import sys

from tqdm import tqdm


def in_notebook():
    """Whether this runs in a Jupyter kernel (ipykernel's shell), where stderr is not a terminal but is watched."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def bar_wanted(stream=None):
    """A bar for ``stream`` (default stderr): it is a terminal, or this is a notebook."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) or in_notebook()


class Progress:
    """Counts ``total`` units of work (``update(n)``), as a context manager.

    With a bar (``bar``: None decides by :func:`bar_wanted`) tqdm draws it on stderr and removes it when done;
    without, ``log(line)`` gets ``"  <description> <done> / <total> <unit>"`` about every 10%.
    :meth:`write` prints a line to stdout without breaking the bar.
    """

    def __init__(self, total, description, unit="it", log=None, bar=None):
        self.total, self.description, self.unit, self.log = int(total), description, unit, log
        self.done = 0
        self._every = max(1, self.total // 10)
        self._bar = (tqdm(total=self.total, desc=description, unit=unit, file=sys.stderr, leave=False,
                          dynamic_ncols=True) if (bar_wanted() if bar is None else bar) else None)

    def update(self, n=1):
        if self._bar is not None:
            self._bar.update(n)
        elif self.log and (self.done + n) // self._every > self.done // self._every:
            self.log("  %s %d / %d %s" % (self.description, self.done + n, self.total, self.unit))
        self.done += n

    def write(self, line):
        if self._bar is not None:
            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
