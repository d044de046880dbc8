"""``harness.execute``: child runs N at a time, their errors, progress, and stopping on signals."""

import os
import signal

import pytest

from harness import execute


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
