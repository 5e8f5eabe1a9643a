"""Crash-safe output folders and graceful stops, for every use case that writes files.

An output folder is complete exactly when its ``summary.json`` exists: that
file is the completion marker (docs/contracts.md). :class:`OutputDir` makes
this true whatever happens to the process:

* every output of a run is written into a staging folder inside the output
  folder, ``.tapshield-partial-<pid>`` (the name says what it is), never to
  its final name;
* :meth:`OutputDir.commit` first removes the earlier run's ``summary.json``
  (the folder stops claiming to be complete), then every earlier output the
  new run does not write again (no stale ``rejects.csv`` beside a clean
  run's outputs), renames each new file into place (``os.replace``: a file
  is either the old one or the new one, never half of one) and renames
  ``summary.json`` last;
* a run that fails (an input error, exit 2) or is killed before the commit
  leaves nothing new: :meth:`OutputDir.abandon` removes the staging folder,
  and the next start removes the staging folders of processes that died.

A run killed *during* the commit (a few renames) leaves a folder without
``summary.json``, which by contract is not complete; running again gives the
same files as an uninterrupted run, byte for byte (``tests/app/test_kill.py``).

:func:`graceful_stop` turns SIGTERM (what ``timeout``, systemd and Kubernetes
send) and SIGINT (Ctrl-C) into a flag the use case polls between batches: the
run stops reading, finishes what it has (outputs marked ``interrupted`` in
``summary.json``), closes its notifiers and database, and the command exits 0.
A second signal stops at once (``KeyboardInterrupt``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from tapshield.errors import SetupError
from tapshield.fileio import write_text_atomic

SUMMARY = "summary.json"
"""The completion marker: written last, present only when every other output is."""

STAGING_PREFIX = ".tapshield-partial-"

KNOWN_OUTPUTS = frozenset({
    "alerts.jsonl", "incidents.json", "report.html", SUMMARY, "rejects.csv", "fraud_digest.json",
    "changes.rejects.csv", "portfolio.rejects.csv", "impact.json", "impact.html",
    "impact_merchants.csv", "impact_borrowers.csv",
})
"""Files a run of ``analyze`` may leave; an earlier run's copy is removed when a
new run does not write it again. (The database file is not an output: it
keeps every run.)"""

T = TypeVar("T")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def disk_full(exc: OSError, out: Path) -> SetupError | None:
    """A write refused for want of space (a full disk, a quota, a file size limit)
    as a one-line error that says where: the ``OSError`` of a ``write()`` names no
    file, and "No space left on device" alone does not say which disk."""
    if exc.errno not in _DISK_FULL:
        return None
    where = exc.filename or out
    return SetupError(f"{where}: cannot write the outputs: {exc.strerror}")


def _make_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SetupError(f"{out}: exists and is not a directory (--out names a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SetupError(f"{out}: a parent of the output folder is a file") from None


def _previous_outputs(out: Path) -> set[str]:
    """The outputs of an earlier run in ``out`` (the known names and those its
    ``summary.json`` lists)."""
    names = {n for n in KNOWN_OUTPUTS if (out / n).is_file()}
    # ``impact`` names its events rejects after the events file
    names |= {p.name for p in out.glob("*.rejects.csv") if p.is_file()}
    try:
        listed = json.loads((out / SUMMARY).read_text(encoding="utf-8")).get("outputs")
    except (OSError, ValueError, AttributeError):
        listed = None
    if isinstance(listed, list):
        names |= {n for n in listed if isinstance(n, str) and "/" not in n
                  and (out / n).is_file()}
    return names


def open_streaming_folder(out: Path) -> None:
    """Make ``out`` ready for outputs written as they happen (``live --out``).

    A watch streams ``alerts.jsonl`` and ``incidents.json`` into the folder
    itself, not a staging folder: people ``tail -f`` them while it runs, and a
    stream has no end at which to move them. So the folder is made to say
    "not complete" *before* anything is written: the earlier run's
    ``summary.json`` goes first (a crash from here on leaves no completion
    marker beside the new partial files), then every other output of the
    earlier run (no old ``report.html`` beside a new stream). The stream's own
    ``summary.json`` is written last, when it closes.
    """
    _make_folder(out)
    for p in out.glob(f"{STAGING_PREFIX}*"):
        try:
            pid = int(p.name[len(STAGING_PREFIX):])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)
    old = _previous_outputs(out)
    if SUMMARY in old:
        (out / SUMMARY).unlink()
        _fsync_dir(out)
    for name in sorted(old - {SUMMARY}):
        (out / name).unlink(missing_ok=True)


class OutputDir:
    """One run's outputs, staged and committed as a whole (see the module docstring)."""

    def __init__(self, out: Path, *, inputs: Iterable[Path] = ()) -> None:
        self.out = out
        _make_folder(out)
        self.inputs = [p for p in inputs if p.exists()]
        """Input files of the run: an earlier output by the same name in the folder
        (``impact --incidents out/incidents.json --out out``) is never removed."""
        self.remove_stale_staging()
        self.staging = out / f"{STAGING_PREFIX}{os.getpid()}"
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir()
        self.committed = False

    def path(self, name: str) -> Path:
        """Where the run writes output ``name`` (inside the staging folder)."""
        return self.staging / name

    def final(self, name: str) -> Path:
        """Where output ``name`` will be once the run is committed."""
        return self.out / name

    def remove_stale_staging(self) -> list[Path]:
        """Remove the staging folders of runs whose process is gone (killed)."""
        removed = []
        for p in self.out.glob(f"{STAGING_PREFIX}*"):
            try:
                pid = int(p.name[len(STAGING_PREFIX):])
            except ValueError:
                continue
            if pid != os.getpid() and _pid_alive(pid):
                continue  # another live run writing into the same folder
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        return removed

    def _previous_outputs(self) -> set[str]:
        return _previous_outputs(self.out)

    def commit(self) -> list[str]:
        """Move the staged outputs into place, ``summary.json`` last."""
        new = sorted(p.name for p in self.staging.iterdir() if p.is_file())
        for name in new:
            with open(self.staging / name, "rb") as fh:
                os.fsync(fh.fileno())
        old = {n for n in self._previous_outputs() if not self._is_input(self.out / n)}
        if SUMMARY in old:
            (self.out / SUMMARY).unlink()
            _fsync_dir(self.out)
        for name in sorted(old - set(new) - {SUMMARY}):
            (self.out / name).unlink(missing_ok=True)
        for name in new:
            if name != SUMMARY:
                os.replace(self.staging / name, self.out / name)
        _fsync_dir(self.out)
        if SUMMARY in new:
            os.replace(self.staging / SUMMARY, self.out / SUMMARY)
            _fsync_dir(self.out)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.committed = True
        return new

    def _is_input(self, path: Path) -> bool:
        for source in self.inputs:
            try:
                if os.path.samefile(source, path):
                    return True
            except OSError:
                continue
        return False

    def abandon(self) -> None:
        """Drop the staged outputs: the folder keeps what it had before the run."""
        shutil.rmtree(self.staging, ignore_errors=True)


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` to ``path`` through a temporary name and a rename."""
    write_text_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


class StopFlag:
    """Set by SIGTERM / SIGINT under :func:`graceful_stop`; polled by the use cases."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: str | None = None

    def set(self, name: str = "stop") -> None:
        self.signal = name
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


@contextlib.contextmanager
def graceful_stop() -> Iterator[StopFlag]:
    """SIGTERM and SIGINT set the returned flag (a second one stops at once).

    Only the main thread can install handlers; elsewhere (a test runner's
    worker thread) the flag is returned unconnected.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if flag():
            raise KeyboardInterrupt
        flag.set(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def until_stopped(items: Iterable[T], stop: StopFlag | None) -> Iterator[T]:
    """``items`` until ``stop`` is set (checked before each item is taken)."""
    it = iter(items)
    while stop is None or not stop():
        try:
            item = next(it)
        except StopIteration:
            return
        yield item


def check_distinct(inputs: dict[str, Path], outputs: dict[str, Path | None]) -> None:
    """Refuse an output that would overwrite an input or another output.

    ``validate in.csv --rejects in.csv`` destroyed its input, and ``--out x
    --rejects x`` lost the rejected rows: every path a command writes must be
    a file of its own (compared after resolving links and ``..``).
    """
    seen: dict[Path, str] = {}
    for name, source in inputs.items():
        seen[source.resolve()] = f"the input {name}"
    for name, path in outputs.items():
        if path is None:
            continue
        key = path.resolve()
        clash = seen.get(key)
        if clash is None:
            for other, label in seen.items():
                try:
                    if other.exists() and key.exists() and os.path.samefile(other, key):
                        clash = label
                        break
                except OSError:
                    continue
        if clash is not None:
            raise SetupError(f"{name} {path} would overwrite {clash}: give it another path")
        seen[key] = name


class StagedFile:
    """One output file written under a temporary name beside its final one
    (``.tapshield-partial-<pid>-<name>``, same suffix so the format is kept) and
    renamed into place by :meth:`commit`; nothing written means the final name
    is removed (a stale file of an earlier run never stays beside this run's)."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = final.parent / f"{STAGING_PREFIX}{os.getpid()}-{final.name}"
        self.temp.unlink(missing_ok=True)
        # a killed run's temporary copy of the same output would stay forever
        for p in final.parent.glob(f"{STAGING_PREFIX}*-{final.name}"):
            pid = p.name[len(STAGING_PREFIX):-len(final.name) - 1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                p.unlink(missing_ok=True)

    def commit(self) -> bool:
        """Move the file into place; whether there was one."""
        if self.temp.exists():
            os.replace(self.temp, self.final)
            return True
        self.final.unlink(missing_ok=True)
        return False

    def abandon(self) -> None:
        self.temp.unlink(missing_ok=True)
