"""Running trainings: ``harness.run`` child processes N at a time, and stopping when asked.

One SIGINT (Ctrl-C) or SIGTERM stops a whole invocation: the runs in progress get SIGTERM and
end within seconds, each keeping its last evaluation's checkpoint; runs not started yet are not
started; the command prints one line (``interrupted: N runs finished, M resumable; rerun the same
command to continue``) and exits 130 (SIGINT) or 143 (SIGTERM). The same command resumes.

- :func:`stop_on_signals` turns SIGINT/SIGTERM into :class:`Interrupted` in a process that
  trains in-process (``harness.run``); :func:`deferred` holds the signal back while a seed's
  records are written, so they become visible together.
- :func:`run_jobs` runs child processes with a progress bar that shows the runs in progress
  (with their last evaluated epoch) and an estimate of the time left from earlier records.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

#: how long the runs in progress get to stop after SIGTERM before they are killed
GRACE_S = 30.0


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def interrupted_line(finished: int, resumable: int) -> str:
    return (f"interrupted: {finished} runs finished, {resumable} resumable; rerun the same "
            f"command to continue")


def stoppable(command: Callable[[dict[str, int]], int]) -> int:
    """A command line's exit status: ``command(progress)`` under :func:`stop_on_signals`; when a
    signal stops it, the one interrupted line (from ``progress``: ``finished`` and ``left``,
    which the command keeps up to date) and 128 + the signal."""
    progress = {"finished": 0, "left": 0}
    with stop_on_signals():
        try:
            return command(progress)
        except Interrupted as e:
            print(interrupted_line(progress["finished"], progress["left"]), file=sys.stderr)
            return e.exit_code


_state = {"depth": 0, "held": None, "fired": False}


def _raise(signum: int, frame: object) -> None:
    if _state["fired"]:  # a second signal (Ctrl-C and its parent's SIGTERM) changes nothing
        return
    if _state["depth"]:
        _state["held"] = _state["held"] or signum
        return
    _state["fired"] = True
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` (once) in the main thread while inside;
    the previous handlers are restored after. Outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    _state.update(depth=0, held=None, fired=False)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A signal arriving inside is held back and raised (as :class:`Interrupted`) on leaving,
    so what is written inside (a seed's records, both protocols) is written whole."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
    if not _state["depth"] and _state["held"]:
        signum, _state["held"] = _state["held"], None
        _state["fired"] = True
        raise Interrupted(signum)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGKILL when its parent dies, so a killed reproduction or tuning
    leaves no orphan run writing beside its rerun."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(argv: list[str], log: Path) -> subprocess.Popen:
    """``python -m harness.run ARGV`` in a child process that dies with this one, its output
    appended to ``log`` (the command line first)."""
    cmd = [sys.executable, "-m", "harness.run", *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def last_error(log: Path) -> str | None:
    """The last ``error: ...`` line a child wrote to ``log`` (without the prefix), or None."""
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [x for x in lines if x.startswith("error: ")]
    return errors[-1][len("error: "):] if errors else None


_EPOCH = re.compile(r" epoch (\d+):|resumed after epoch (\d+)")


def last_epoch(log: Path) -> int | None:
    """The last epoch a child's log reports as evaluated (or resumed after), or None."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, os.path.getsize(log) - 8192))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return None
    found = None
    for m in _EPOCH.finditer(tail):
        found = int(m.group(1) or m.group(2))
    return found


@dataclass
class Job:
    """One ``harness.run`` invocation: its name, arguments, log file and (from earlier
    records) its expected length in seconds, None when never timed."""

    name: str
    argv: list[str]
    log: Path
    expected_s: float | None = None


@dataclass
class Outcome:
    job: Job
    exit: int  # the child's exit status; 128 + signal when it was stopped
    wall_s: float


@dataclass
class Progress:
    """What :func:`run_jobs` did: the jobs that ran to an end, those never started, and the
    signal that stopped it (None when every job ran)."""

    done: list[Outcome] = field(default_factory=list)
    stopped: list[Outcome] = field(default_factory=list)  # in progress when the signal came
    not_started: list[Job] = field(default_factory=list)
    signum: int | None = None

    def interrupted_line(self) -> str:
        return interrupted_line(len(self.done), len(self.stopped) + len(self.not_started))


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def eta_text(pending: list[Job], running: dict[str, tuple[Job, float]], slots: int,
             now: float) -> str:
    """An estimate of the time left: the expected seconds of the jobs not started and what is
    left of those running, shared by ``slots``; "≥" when some were never timed."""
    left = sum(j.expected_s for j in pending if j.expected_s is not None)
    left += sum(max(0.0, j.expected_s - (now - t0)) for j, t0 in running.values()
                if j.expected_s is not None)
    untimed = sum(1 for j in pending if j.expected_s is None) + sum(
        1 for j, _ in running.values() if j.expected_s is None)
    text = f"~{_hms(left / max(1, slots))} left"
    return (f"≥{text[1:]} ({untimed} never timed)") if untimed else text


def run_jobs(jobs: list[Job], slots: int, desc: str = "runs") -> Progress:
    """Run ``jobs`` in child processes, ``slots`` at a time, in the given order.

    SIGINT/SIGTERM (to this process) stops it: the children get SIGTERM (and SIGKILL after
    ``GRACE_S``), nothing more starts, and the result says which signal came.
    """
    out = Progress()
    pending = list(jobs)
    running: dict[str, tuple[Job, float, subprocess.Popen]] = {}
    got: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if not got:
            got.append(signum)

    main_thread = threading.current_thread() is threading.main_thread()
    old = ({s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
           if main_thread else {})
    bar = tqdm(total=len(jobs), desc=desc, leave=True, mininterval=1.0)
    shown = 0.0
    try:
        while pending or running:
            if got and pending:
                out.not_started += pending
                pending.clear()
            while pending and len(running) < slots:
                job = pending.pop(0)
                running[job.name] = (job, time.perf_counter(), start(job.argv, job.log))
            for name, (job, t0, proc) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[name]
                rc = 128 - rc if rc < 0 else rc  # killed by a signal: as a shell reports it
                outcome = Outcome(job, rc, time.perf_counter() - t0)
                (out.stopped if got and rc in (130, 143, 137) else out.done).append(outcome)
                bar.update(1)
            if got:
                _stop(running)
                continue
            now = time.perf_counter()
            if now - shown >= 2.0:
                shown = now
                parts = []
                for job, t0, _ in running.values():
                    epoch = last_epoch(job.log)
                    parts.append(job.name + (f" epoch {epoch}" if epoch is not None else " starting"))
                bar.set_postfix_str(eta_text(pending, {n: (j, t) for n, (j, t, _) in running.items()},
                                             slots, now) + (" | " + ", ".join(parts) if parts else ""),
                                    refresh=True)
            time.sleep(0.2)
    finally:
        bar.close()
        for s, h in old.items():
            signal.signal(s, h)
    out.signum = got[0] if got else None
    return out


def _stop(running: dict[str, tuple[Job, float, subprocess.Popen]]) -> None:
    """SIGTERM to every child in progress; SIGKILL to those still there after ``GRACE_S``."""
    deadline = time.perf_counter() + GRACE_S
    for _, _, proc in running.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    while any(p.poll() is None for _, _, p in running.values()):
        if time.perf_counter() > deadline:
            for _, _, proc in running.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            break
        time.sleep(0.1)


def default_jobs() -> int:
    """Runs to start at once by default: one per usable core (each with one torch thread)."""
    return max(1, len(os.sched_getaffinity(0)))
