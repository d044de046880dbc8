"""``harness.execute``: child runs N at a time, their errors, progress, and stopping on signals."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import execute, store


def test_a_refused_child_run_reports_its_own_error_line(tmp_path):
    jobs = [execute.Job("bad", ["--model", "nope", "--results-dir", str(tmp_path / "res")],
                        tmp_path / "logs" / "bad.log")]
    out = execute.run_jobs(jobs, slots=1)
    (done,) = out.done
    assert done.exit == 2 and out.signum is None and not out.not_started
    assert execute.last_error(done.job.log).startswith("unknown model 'nope'; valid: ")
    assert not (tmp_path / "res").exists()


def test_the_estimate_shares_what_is_left_among_the_slots():
    a = execute.Job("a", [], None, expected_s=600)
    b = execute.Job("b", [], None, expected_s=1200)
    c = execute.Job("c", [], None)
    # 600 s pending, 1200 - 200 = 1000 s left of the running one: 1600 s over 2 slots
    assert execute.eta_text([a], {"b": (b, 100.0)}, 2, now=300.0) == "~0:13:20 left"
    assert execute.eta_text([a, c], {}, 1, now=0.0) == "≥0:10:00 left (1 never timed)"
    # once runs of this invocation have finished, a run never timed counts as their median
    done = [execute.Outcome(a, 0, 300.0), execute.Outcome(b, 0, 500.0),
            execute.Outcome(b, 0, 400.0), execute.Outcome(b, 1, 5.0)]  # a failure: not counted
    assert execute.eta_text([a, c], {"d": (execute.Job("d", [], None), 0.0)}, 1, now=100.0,
                            finished=done) == \
        "~0:21:40 left (2 never timed, counted at the median of 3 finished)"


def test_the_last_evaluated_epoch_is_read_from_a_runs_log(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("$ python -m harness.run\nsasrec/zhihu seed 0: resumed after epoch 9 from x\n"
                   "sasrec/zhihu seed 0 epoch 14: loss 0.1 val NDCG@20 0.0100 (best epoch 14, 9 s)\n")
    assert execute.last_epoch(log) == 14
    assert execute.last_epoch(tmp_path / "absent.log") is None


def test_a_signal_inside_deferred_waits_until_the_block_is_written():
    written = []
    with execute.stop_on_signals():
        with pytest.raises(execute.Interrupted) as e:
            with execute.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                written.append("validation")
                os.kill(os.getpid(), signal.SIGINT)  # a second signal changes nothing
                written.append("published")
        assert e.value.exit_code == 143
    assert written == ["validation", "published"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_a_signal_during_a_checkpoint_write_leaves_the_file_whole_then_stops(tmp_path):
    """Raised inside torch.save's writer, an interrupt came out as a RuntimeError ("enforce
    fail at inline_container.cc") and the run died with a traceback instead of stopping."""
    import torch

    from harness import store

    state = {"weights": torch.arange(2_000_000, dtype=torch.float32)}
    path = tmp_path / "seed0.pt"

    def write(fh):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while torch.save runs
        torch.save(state, fh)

    with execute.stop_on_signals():
        with pytest.raises(execute.Interrupted):
            store.atomic_write(path, write)
    assert torch.equal(torch.load(path, weights_only=True)["weights"], state["weights"])
    assert [p.name for p in tmp_path.iterdir()] == ["seed0.pt"]  # no temp file left


TINY_RUN = ["--model", "gru4rec", "--dataset", "ml-100k", "--seeds", "1", "--device", "cpu",
            "--threads", "1", "--no-progress", "--no-summary", "--set", "embedding_size=16",
            "--set", "hidden_size=16", "--set", "batch_size=1024", "--set", "eval_every=1"]


def _pids(pattern):
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def _parent(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_run_whose_ray_worker_dies_fails_with_one_line_and_the_others_finish(tmp_path):
    """Two runs on a local Ray (2 CPUs); the worker that started one is killed: that run is
    reported failed with one line and leaves no process behind, the other finishes."""
    res = tmp_path / "res"
    doomed = execute.Job("doomed", [*TINY_RUN, "--set", "max_epochs=1000", "--results-dir",
                                    str(res / "doomed")], tmp_path / "logs" / "doomed.log")
    other = execute.Job("other", [*TINY_RUN, "--set", "max_epochs=2", "--results-dir",
                                  str(res / "other")], tmp_path / "logs" / "other.log")
    killed, niceness = [], []

    def kill_the_worker():
        deadline = time.time() + 240
        while time.time() < deadline:
            text = doomed.log.read_text() if doomed.log.exists() else ""
            runs = _pids(f"harness.run .*{res}/doomed")
            if runs and " epoch 0:" in text:
                # a local Ray runs its workers at nice 15 unless told; the runs train at ours
                niceness.append(os.getpriority(os.PRIO_PROCESS, runs[0]))
                worker = _parent(runs[0])
                os.kill(worker, signal.SIGKILL)
                killed.append(worker)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    out = execute.run_jobs([doomed, other], slots=2)
    killer.join()
    assert killed, "the doomed run never evaluated"
    assert niceness == [os.getpriority(os.PRIO_PROCESS, 0)]
    outcomes = {o.job.name: o for o in out.done}
    assert out.signum is None and set(outcomes) == {"doomed", "other"}
    assert outcomes["doomed"].exit != 0
    why = outcomes["doomed"].reason()
    assert "Ray task ended with" in why and "\n" not in why
    assert outcomes["other"].exit == 0
    rec = store.read_record(store.record_path(res / "other", "ml-100k", "gru4rec", "validation", 0))
    assert rec["status"] == "ok" and rec["epochs_run"] == 2
    time.sleep(1.0)
    assert _pids(f"harness.run .*{res}") == []  # the doomed run died with its worker
    assert store.checkpoint_path(res / "doomed", "ml-100k", "gru4rec", 0).exists()


def test_runs_on_ray_reserve_the_cpus_and_gpus_they_declare(monkeypatch):
    """The local Ray is sized for the runs at once, and each Ray task asks for its run's
    threads and GPU fraction."""
    seen = {}

    class FakeRay:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kw):
            seen.update(kw)

    monkeypatch.setitem(sys.modules, "ray", FakeRay)
    assert execute.ray_init(execute.Cluster(None, cpus=3, gpus=0.25), slots=4)
    assert seen["num_cpus"] == 12 and seen["num_gpus"] == 1
    seen.clear()
    assert execute.ray_init(execute.Cluster("auto", cpus=1), slots=4)
    assert seen["address"] == "auto" and "num_cpus" not in seen


def test_the_install_has_a_current_ray_beside_recbole():
    """recbole 1.2.1 pins ray<=2.6.3, which does not import; the install puts a current Ray
    beside it (recbole without its pins: pyproject.toml, tox.ini, README)."""
    import importlib.metadata

    import ray

    assert tuple(int(x) for x in ray.__version__.split(".")[:2]) >= (2, 44)
    assert importlib.metadata.version("recbole") == "1.2.1"
    from baselines.compat import recbole_models

    assert recbole_models().SASRec.__module__ == "recbole.model.sequential_recommender.sasrec"


def test_a_missing_recbole_is_one_line_that_says_how_to_install_it(monkeypatch, tmp_path,
                                                                   capsys):
    import importlib.util

    from harness import run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "recbole" else real(name, *a))
    assert run.main(["--model", "sasrec", "--dataset", "ml-100k", "--results-dir",
                     str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: recbole is not installed; install it with: pip install --no-deps "
                   "recbole==1.2.1 (its own pinned dependencies are not needed: pyproject.toml "
                   "declares what the harness uses)")
    assert not (tmp_path / "res").exists()
