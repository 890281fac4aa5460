"""A run directory ``<model_save_dir>/<model>/``: one run's checkpoints and log, written by one process.

Rules (issue 16: reruns silently overwrote checkpoints and interleaved two runs in one log):

- A directory that already holds a run (a checkpoint, a ``latest`` link, a ``train_log.jsonl`` or a
  ``FAILED`` marker) is refused unless the run resumes one of its checkpoints (``--checkpoint``) or
  ``--overwrite True`` clears it.
- While a run trains it holds an exclusive ``flock`` on ``<run>/.lock``; a second process writing to the
  same directory is refused, whatever its flags.
- Resuming keeps the log's records up to the resumed iteration and drops the later ones (they belong to
  the part of the run that the checkpoint does not hold), then marks where the run resumed.
- The log holds one JSON object a line: training progress (``iter``, ``lr``, ``images_per_s``, the loss terms,
  ...), evaluations (``{"iter": i, "eval": {...}}``) and events (``{"event": "resumed", "iter": i}``);
  :func:`read_log` reads it back and :func:`log_scalars` names the numbers of a record, for the plots
  (:mod:`metric_learning.plots`) and the VisualDL mirror (:mod:`metric_learning.engine.dashboard`).
- A run that fails leaves either no directory (nothing was saved yet) or its checkpoints plus a ``FAILED``
  file giving the reason and the command-line flag to resume. Leftover temporary checkpoint directories
  of a process killed mid-save are removed when the next run takes the directory.
"""
import fcntl
import json
import os
import re
import shutil

from metric_learning.models import checkpoint

LOCK_FILE = ".lock"
LOG_FILE = "train_log.jsonl"
FAILED_FILE = "FAILED"
# hidden temporary names of checkpoint.save_checkpoint / point_latest: ".<iter>.tmp-*", ".<iter>.old-*", ".latest.tmp-*"
_STALE = re.compile(r"^\..+\.(tmp|old)-")


class RunDirError(ValueError):
    """The run directory cannot be used as asked; the message says why and which flag to use."""


def _log_records(lines):
    """``(line, record)`` of each parsable line; a line cut short by a crash is skipped."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield line, record


def read_log(run_dir):
    """The records of ``run_dir``'s ``train_log.jsonl`` (``run_dir`` may also be the log file itself).

    Raises FileNotFoundError naming the missing folder or file, ValueError naming a log without records.
    """
    if not os.path.exists(run_dir):
        raise FileNotFoundError("run directory %s does not exist" % run_dir)
    path = run_dir if os.path.isfile(run_dir) else os.path.join(run_dir, LOG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError("%s has no %s (is it a training run's <model_save_dir>/<model> folder?)"
                                % (run_dir, LOG_FILE))
    with open(path, encoding="utf-8") as f:
        records = [record for _, record in _log_records(f)]
    if not records:
        raise ValueError("%s holds no records (the run logged nothing yet, or the file is not a training log)"
                         % path)
    return records


def log_scalars(record):
    """``{tag: value}`` of the numbers a log record holds: ``train/<key>`` for a progress record (its
    iteration excepted), ``eval/<key>`` for an evaluation (image counts, ``num_*``, excepted); events have none."""
    if "event" in record:
        return {}
    group, items = ("eval", record["eval"]) if "eval" in record else ("train", record)
    return {"%s/%s" % (group, key): float(value) for key, value in items.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "iter"
            and not key.startswith("num_")}


def checkpoints_in(run_dir):
    """Iterations of the complete checkpoints in ``run_dir``, ascending."""
    if not os.path.isdir(run_dir):
        return []
    return sorted(int(name) for name in os.listdir(run_dir)
                  if name.isdigit() and os.path.isfile(os.path.join(run_dir, name, checkpoint.MODEL_FILE)))


def run_contents(run_dir):
    """What in ``run_dir`` makes it hold a run (empty list: nothing)."""
    found = ["checkpoint %d" % it for it in checkpoints_in(run_dir)]
    for name in (checkpoint.LATEST, LOG_FILE, FAILED_FILE):
        if os.path.lexists(os.path.join(run_dir, name)):
            found.append(name)
    return found


def _refusal(run_dir, found):
    latest = os.path.join(run_dir, checkpoint.LATEST)
    failed = os.path.join(run_dir, FAILED_FILE)
    reason = ""
    if os.path.isfile(failed):
        with open(failed, encoding="utf-8") as f:
            reason = " It failed: %s." % f.readline().strip()
    resume = ("resume it with --checkpoint %s, " % latest) if os.path.lexists(latest) else ""
    return RunDirError("%s already holds a run (%s).%s To keep it apart, %sstart over with --overwrite True, or "
                       "choose another --model_save_dir" % (run_dir, ", ".join(found), reason, resume))


def _locked_by(run_dir):
    """The pid holding ``run_dir``'s lock, or None when no process holds it."""
    path = os.path.join(run_dir, LOCK_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            return f.read().strip() or "?"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def _resumes_own(run_dir, checkpoint_path):
    """Whether ``checkpoint_path`` is one of ``run_dir``'s checkpoints (resuming another run there would mix)."""
    real = os.path.realpath(checkpoint_path)
    return os.path.dirname(real) == os.path.realpath(run_dir) or real == os.path.realpath(run_dir)


def check_can_start(run_dir, resume_from=None, overwrite=False):
    """Refuse early (before data and model are built) what :meth:`RunDir.acquire` would refuse.

    ``resume_from``: the ``--checkpoint`` a resumed run continues from (None for a fresh run).
    """
    pid = _locked_by(run_dir)
    if pid is not None:
        raise RunDirError("another run (pid %s) is writing to %s; wait for it to finish or choose another "
                          "--model_save_dir" % (pid, run_dir))
    found = run_contents(run_dir)
    if found and not overwrite and not (resume_from and _resumes_own(run_dir, resume_from)):
        raise _refusal(run_dir, found)


class RunDir:
    """Owns ``path`` for one training run: lock, log, failure marker (see the module docstring)."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.log_path = os.path.join(self.path, LOG_FILE)
        self._lock = None
        self._created = []

    def acquire(self, resume_from=None, resume_iteration=None, overwrite=False):
        """Take the directory: lock it, check it may be written, tidy what a killed process left.

        ``resume_from`` / ``resume_iteration``: the checkpoint a resumed run continues from and its iteration
        (None for a fresh run).
        """
        missing, parent = [], self.path
        while not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        os.makedirs(self.path, exist_ok=True)
        self._created = missing   # removed again if the run fails before saving anything
        lock = open(os.path.join(self.path, LOCK_FILE), "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            pid = lock.read().strip() or "?"
            lock.close()
            raise RunDirError("another run (pid %s) is writing to %s; wait for it to finish or choose another "
                              "--model_save_dir" % (pid, self.path)) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        try:
            self._prepare(resume_from, resume_iteration, overwrite)
        except BaseException:
            self.release()
            raise
        return self

    def _prepare(self, resume_from, resume_iteration, overwrite):
        for name in os.listdir(self.path):
            if _STALE.match(name):   # a checkpoint or link half-written by a killed process
                _remove(os.path.join(self.path, name))
        found = run_contents(self.path)
        own = resume_from is not None and _resumes_own(self.path, resume_from)
        if found and not own:
            if not overwrite:
                raise _refusal(self.path, found)
            for name in os.listdir(self.path):
                if name != LOCK_FILE:
                    _remove(os.path.join(self.path, name))
        if resume_iteration is not None:
            self._trim_log(resume_iteration)
        if os.path.exists(os.path.join(self.path, FAILED_FILE)):
            os.remove(os.path.join(self.path, FAILED_FILE))

    def _trim_log(self, iteration):
        """Keep the records of iterations the checkpoint holds, then note the resume."""
        kept = []
        if os.path.isfile(self.log_path):
            with open(self.log_path, encoding="utf-8") as f:
                kept = [line if line.endswith("\n") else line + "\n" for line, record in _log_records(f)
                        if record.get("iter", 0) <= iteration]
        kept.append(json.dumps({"event": "resumed", "iter": iteration}) + "\n")
        tmp = self.log_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, self.log_path)

    def open_log(self):
        return open(self.log_path, "a", encoding="utf-8")

    def fail(self, reason, resume_from=None):
        """The run stopped without finishing: keep what can be resumed, marked, or leave nothing at all."""
        if not checkpoints_in(self.path):
            self.release()
            shutil.rmtree(self.path, ignore_errors=True)
            for directory in self._created[1:]:   # parents this run created, now empty
                try:
                    os.rmdir(directory)
                except OSError:
                    break
            return None
        with open(os.path.join(self.path, FAILED_FILE), "w", encoding="utf-8") as f:
            f.write(reason.strip().replace("\n", " ") + "\n")
            if resume_from:
                f.write("resume with --checkpoint %s\n" % resume_from)
        return os.path.join(self.path, FAILED_FILE)

    def release(self):
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
