"""``python -m harness.run``: records, resume, failures and bad input."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import store
from harness.run import main

TINY = ["--set", "eval_every=1", "--set", "timesteps=5", "--set", "hidden_size=16",
        "--no-progress", "--threads", "1"]
FAST = ["--set", "max_epochs=2", *TINY]


def run(tmp_path, *args):
    return main(["--dataset", "ml-100k", "--results-dir", str(tmp_path / "res"), *args])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    rc = main(["--dataset", "ml-100k", "--results-dir", str(tmp / "res"), "--seeds", "2",
               "--protocol", "both", *FAST])
    return tmp, rc


def test_records_hold_metrics_and_provenance(finished):
    tmp, rc = finished
    assert rc == 0
    for protocol in ("validation", "published"):
        for seed in (0, 1):
            path = store.record_path(tmp / "res", "ml-100k", "dreamrec", protocol, seed)
            rec = json.loads(path.read_text())
            assert rec["status"] == "ok" and rec["seed"] == seed and rec["protocol"] == protocol
            assert rec["config"]["model"]["timesteps"] == 5
            assert rec["config"]["train"]["max_epochs"] == 2
            assert set(rec["test"]) == {f"{m}@{k}" for m in ("hr", "ndcg") for k in (10, 20, 50)} | {
                "coverage@20"}
            assert 0 < rec["test"]["coverage@20"] <= 1
            assert len(rec["data_checksum"]) == 64 and rec["versions"]["torch"]
            assert rec["device"] == "cpu" and rec["epochs_run"] == 2
            assert "commit" in rec["git"] and rec["wall"]["total_s"] > 0
            ranks = store.read_ranks(path)
            assert ranks.shape == (rec["rows"]["test"],)
            assert np.mean(ranks < 20) == pytest.approx(rec["test"]["hr@20"])
    pub = json.loads(store.record_path(tmp / "res", "ml-100k", "dreamrec", "published", 0).read_text())
    assert "TEST" in pub["selection"]


def test_rerun_skips_finished_records_and_a_changed_config_goes_beside_them(finished, capsys):
    tmp, _ = finished
    path = store.record_path(tmp / "res", "ml-100k", "dreamrec", "validation", 0)
    before = path.stat().st_mtime_ns
    assert main(["--dataset", "ml-100k", "--results-dir", str(tmp / "res"), "--seeds", "2",
                 "--protocol", "both", *FAST]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == 2
    assert path.stat().st_mtime_ns == before
    # another config (--set) never replaces these records: it is kept apart, by its hash
    assert main(["--dataset", "ml-100k", "--results-dir", str(tmp / "res"), "--seeds", "1",
                 *FAST, "--set", "max_epochs=1"]) == 0
    assert path.stat().st_mtime_ns == before
    assert json.loads(path.read_text())["config"]["train"]["max_epochs"] == 2
    (variant,) = (tmp / "res" / "variants").glob("*/records/ml-100k/dreamrec/validation/seed0.json")
    rec = json.loads(variant.read_text())
    assert rec["config"]["train"]["max_epochs"] == 1
    assert variant.parts[-6] == rec["config_hash"]
    captured = capsys.readouterr()
    assert f"records of this config go to {tmp / 'res' / 'variants' / rec['config_hash']}/" in captured.err
    assert "1/1" in captured.out  # the summary reads the variant's own records


def test_the_readme_set_example_writes_beside_the_committed_records(tmp_path):
    from harness.run import build_parser, prepare

    shutil.copytree(store.REPO_ROOT / "results" / "records" / "ml-100k" / "dreamrec",
                    tmp_path / "records" / "ml-100k" / "dreamrec")
    args = build_parser().parse_args(["--dataset", "ml-100k", "--set", "timesteps=200", "--set",
                                      "w=2", "--seeds", "3", "--results-dir", str(tmp_path)])
    prep = prepare(args)
    assert not prep.configured
    assert prep.home == tmp_path / "variants" / prep.chash
    committed = set(store.record_hashes(tmp_path, "ml-100k", "dreamrec").values())
    assert committed and prep.chash not in committed
    configured = prepare(build_parser().parse_args(["--dataset", "ml-100k", "--results-dir",
                                                    str(tmp_path)]))
    assert configured.configured and configured.home == tmp_path
    # (the committed records are the config file's, or an older config's while a campaign
    # reruns the row: either way not the --set example's)
    assert configured.chash != prep.chash


def test_a_configured_run_moves_another_configs_records_aside_and_brings_its_own_back(
        tmp_path, monkeypatch, capsys):
    import harness.models

    configs = tmp_path / "configs"
    shutil.copytree(harness.models.CONFIG_DIR, configs)
    monkeypatch.setattr(harness.models, "CONFIG_DIR", configs)
    cfg = configs / "ml-100k" / "dreamrec.toml"
    text = cfg.read_text()
    for key, value in (("timesteps", 5), ("hidden_size", 16), ("max_epochs", 1)):
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
    cfg.write_text(text)
    res = tmp_path / "res"
    args = ["--dataset", "ml-100k", "--results-dir", str(res), "--seeds", "1", "--no-progress",
            "--threads", "1"]
    assert main(args) == 0  # the config file's own settings: the main records
    path = store.record_path(res, "ml-100k", "dreamrec", "validation", 0)
    first = json.loads(path.read_text())
    cfg.write_text(text.replace("lr = ", "lr = 2e-4 #", 1))  # the config file changes
    assert main(args) == 0
    second = json.loads(path.read_text())
    assert second["config_hash"] != first["config_hash"]
    aside = store.record_path(store.variant_dir(res, first["config_hash"]), "ml-100k",
                              "dreamrec", "validation", 0)
    assert json.loads(aside.read_text()) == first and aside.with_suffix(".npz").exists()
    assert f"moved {path} to {aside}" in capsys.readouterr().err
    cfg.write_text(text)  # back to the first settings: its records come back, nothing retrains
    assert main(args) == 0
    assert json.loads(path.read_text()) == first
    assert "skipped" in capsys.readouterr().err
    assert json.loads(store.record_path(store.variant_dir(res, second["config_hash"]), "ml-100k",
                                        "dreamrec", "validation", 0).read_text()) == second


def test_a_finished_run_prints_percent_and_leaves_no_checkpoint_folder(finished, tmp_path, capsys):
    assert run(tmp_path, "--seeds", "1", *FAST) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("seed 0: epochs"))
    rec = json.loads(store.record_path(tmp_path / "res", "ml-100k", "dreamrec", "validation", 0)
                     .read_text())
    assert f"HR@20 {100 * rec['test']['hr@20']:.2f} %" in line
    assert not (tmp_path / "res" / "checkpoints").exists()


def test_a_full_disk_fails_with_one_line_and_keeps_the_records_before(finished, tmp_path,
                                                                       monkeypatch, capsys):
    import errno

    tmp, _ = finished
    res = tmp_path / "res"
    shutil.copytree(tmp / "res" / "records", res / "records")
    seed0 = store.record_path(res, "ml-100k", "dreamrec", "validation", 0)
    before = seed0.read_bytes()
    real = store.atomic_write

    def full(path, write):
        def failing(fh):
            fh.write(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, failing if Path(path).name.startswith("seed2") else write)

    monkeypatch.setattr(store, "atomic_write", full)
    assert main(["--dataset", "ml-100k", "--results-dir", str(res), "--seeds", "3",
                 "--protocol", "both", *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot write ") and "No space left on device" in err[-1]
    assert "--results-dir" in err[-1] and not any("Traceback" in x for x in err)
    assert seed0.read_bytes() == before
    left = [p.name for p in res.rglob("*") if p.is_file() and "seed2" in p.name]
    assert left == []  # no partial file, no temp file


def test_nan_loss_marks_the_run_failed_and_keeps_it_out_of_the_mean(tmp_path, capsys):
    assert run(tmp_path, "--seeds", "1", *FAST, "--set", "lr=1e30") == 1
    rec = json.loads(store.record_path(tmp_path / "res", "ml-100k", "dreamrec", "validation", 0).read_text())
    assert rec["status"] == "failed" and "nan" in rec["error"]
    out = capsys.readouterr()
    assert "0/1 (1 failed)" in out.out and "FAILED" in out.err


@pytest.mark.parametrize("args, message", [
    (["--model", "nope"], "unknown model 'nope'; valid: adaranker, caser, cl4srec, diffrec, "
                          "diffurec, dreamrec, gru4rec, ips, preferdiff, sasrec"),
    (["--dataset", "movielens"], "unknown dataset 'movielens'; valid: ml-100k, yc, ks, zhihu"),
    (["--set", "bogus=1"], "unknown setting 'bogus' for dreamrec; valid:"),
    (["--set", "timesteps=many"], "setting 'timesteps' must be int, got 'many'"),
    (["--set", "schedule=quadratic"], "unknown schedule 'quadratic'"),
    (["--device", "cuda"], "no CUDA device"),
    (["--set", "lr"], "--set takes KEY=VALUE"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    # ml-100k's 82,552 training rows = 21 x 3931 + 1: a last batch without an in-batch negative
    (["--model", "preferdiff", "--set", "batch_size=21"],
     "preferdiff needs batches of 2 or more rows, and batch_size 21 leaves a last batch of 1 of "
     "the 82552 training rows"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    if "cuda" in args:
        import torch
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
    assert main(["--results-dir", str(tmp_path / "res"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("text, message", [
    ("[model]\nhidden_sise = 64\n", "unknown setting 'hidden_sise' in [model]"),
    ("[train]\nlr = \"fast\"\n", "setting 'lr' must be float, got 'fast' (str)"),
    ("[train]\nmax_epochs = 2.5\n", "setting 'max_epochs' must be int"),
    ("[optim]\nlr = 0.1\n", "unknown section 'optim'"),
    ("[model]\ntimesteps = 500\n", "unknown setting 'timesteps' in [model]"),  # DreamRec's
    ("[train\nlr = 0.1\n", "is not valid TOML"),
    (None, "not found"),
])
def test_bad_config_file_names_the_file_and_key(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    if text is not None:
        path.write_text(text)
    assert main(["--results-dir", str(tmp_path / "res"), "--model", "sasrec",
                 "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config file ") and message in err and "\n" not in err
    assert str(path) in err
    assert not (tmp_path / "res").exists()


def test_missing_data_file_names_it(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.run", "--dataset", "zhihu", "--data-dir",
                        str(tmp_path), "--results-dir", str(tmp_path / "res")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "zhihu" in r.stderr and ".df" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_tune_chooses_the_point_with_the_best_validation_ndcg(tmp_path, monkeypatch):
    import shutil

    import harness.models
    from harness.tune import main as tune_main

    shutil.copytree(harness.models.CONFIG_DIR, tmp_path / "configs")
    monkeypatch.setattr(harness.models, "CONFIG_DIR", tmp_path / "configs")

    assert tune_main(["--dataset", "ml-100k", "--results-dir", str(tmp_path), "--grid",
                      "lr=1e-9,1e-2", "--jobs", "1", *TINY, "--set", "max_epochs=1"]) == 0
    vals = {}  # (lr, w) -> validation metrics: each trial also scores every w of the rule
    for lr in ("1e-9", "1e-2"):
        rec = json.loads(store.record_path(tmp_path / "tuning" / "ml-100k" / "dreamrec" / f"lr={lr}",
                                           "ml-100k", "dreamrec", "validation", 0).read_text())
        assert {f"w={w}" for w in (0, 4, 6, 8, 10)} <= set(rec["variants"])
        vals[lr, "2"] = (rec["val"]["ndcg@20"], rec["val"]["hr@20"])
        for name, v in rec["variants"].items():
            vals[lr, name.split("=")[1]] = (v["val"]["ndcg@20"], v["val"]["hr@20"])
    best, w = max(vals, key=vals.get)
    text = (tmp_path / "tuning" / "ml-100k-dreamrec-grid.md").read_text()
    assert f"Chosen by validation NDCG@20: **lr={best}, w={w}**" in text
    written = (tmp_path / "configs" / "ml-100k" / "dreamrec.toml").read_text()
    assert f"[train]: lr {best}, w {w} chosen on validation" in written
    assert f"lr = {float(best)}" in written and f"w = {float(w)}" in written
    assert "timesteps = 500" in written and "max_epochs = 1000" in written  # not the trials' --set
    # the command that reproduces it, the trials' --set included, in the file and the report
    cmd = ("python -m harness.tune --model dreamrec --dataset ml-100k --grid lr=1e-9,1e-2 "
           "--seeds 1 --set")
    assert f"`{cmd} eval_every=1" in written.replace("\n# ", " ") and f"`{cmd} eval_every=1" in text


def test_tune_jobs_train_points_in_parallel_processes_with_the_same_records(tmp_path, monkeypatch):
    import shutil

    import harness.models
    from harness.tune import main as tune_main

    shutil.copytree(harness.models.CONFIG_DIR, tmp_path / "configs")
    monkeypatch.setattr(harness.models, "CONFIG_DIR", tmp_path / "configs")
    grid = ["--dataset", "ml-100k", "--grid", "lr=1e-9,1e-2", "--no-write-config", *TINY,
            "--set", "max_epochs=1"]
    assert tune_main(["--results-dir", str(tmp_path / "one"), "--jobs", "1", *grid]) == 0
    assert tune_main(["--results-dir", str(tmp_path / "two"), "--jobs", "2", *grid]) == 0
    for lr in ("1e-9", "1e-2"):
        point = Path("tuning") / "ml-100k" / "dreamrec" / f"lr={lr}"
        recs = [json.loads(store.record_path(tmp_path / d / point, "ml-100k", "dreamrec",
                                             "validation", 0).read_text()) for d in ("one", "two")]
        assert _comparable(recs[0]) == _comparable(recs[1])
        # each point ran in its own process, its log in the git-ignored logs/ folder
        log = (tmp_path / "two" / "logs" / "tuning" / "ml-100k" / "dreamrec" / f"lr={lr}.log")
        assert log.read_text().startswith("$ ") and f"lr={lr}" in log.read_text()
        assert {p.name for p in (tmp_path / "two" / point).iterdir()} == {"records"}
    # --jobs 2: Ray Tune trials on a local Ray; --jobs 1: this process, the same logs
    assert (tmp_path / "two" / "logs" / "tuning" / "ml-100k" / "dreamrec" / "ray").is_dir()
    assert not (tmp_path / "one" / "logs" / "tuning" / "ml-100k" / "dreamrec" / "ray").exists()
    reports = [(tmp_path / d / "tuning" / "ml-100k-dreamrec-grid.md").read_text()
               for d in ("one", "two")]
    assert _without_run_times(reports[0]) == _without_run_times(reports[1])


def test_tune_prune_stops_a_trial_that_falls_behind_on_validation_and_keeps_it_stopped(
        tmp_path, monkeypatch):
    """--prune: Ray Tune's ASHA. The trials run one at a time in the grid's order, so the bad
    learning rate reaches the first rung (5 evaluations) after the good one and is stopped
    there; the report ranks it by what it reached, and a rerun does not train it again."""
    import shutil

    import harness.models
    from harness.tune import main as tune_main

    shutil.copytree(harness.models.CONFIG_DIR, tmp_path / "configs")
    monkeypatch.setattr(harness.models, "CONFIG_DIR", tmp_path / "configs")
    res = tmp_path / "res"
    argv = ["--model", "gru4rec", "--dataset", "ml-100k", "--grid", "lr=1e-2,1e-9", "--grid",
            "weight_decay=1e-6", "--no-write-config", "--results-dir", str(res), "--jobs", "1",
            "--prune", "--threads", "1", "--device", "cpu", "--set", "embedding_size=16",
            "--set", "hidden_size=16", "--set", "batch_size=1024", "--set", "eval_every=1",
            "--set", "max_epochs=8", "--set", "patience=20"]
    assert tune_main(argv) == 0
    root = res / "tuning" / "ml-100k" / "gru4rec"
    good, bad = root / "lr=1e-2,weight_decay=1e-6", root / "lr=1e-9,weight_decay=1e-6"
    rec = json.loads(store.record_path(good, "ml-100k", "gru4rec", "validation", 0).read_text())
    assert rec["epochs_run"] == 8
    cut = json.loads((bad / "pruned.json").read_text())
    assert cut["evaluations"] == 5 and cut["grace"] == 5
    assert not (bad / "records").exists()
    log = res / "logs" / "tuning" / "ml-100k" / "gru4rec" / "lr=1e-9,weight_decay=1e-6.log"
    assert len(re.findall(r" epoch \d+:", log.read_text())) == 5  # stopped at the rung
    report = (res / "tuning" / "ml-100k-gru4rec-grid.md").read_text()
    assert "pruned after 5 evaluations" in report and "--prune" in report
    assert "| grid    | 1e-2 |" in report and "chosen" in report.split("| 1e-2 |")[1].split("\n")[0]
    before = log.read_text()
    assert tune_main(argv) == 0  # the rerun trains nothing
    assert log.read_text() == before


def _without_run_times(report):
    """A tuning report without its run times (the minutes column and the cost line)."""
    lines = [x for x in report.splitlines() if not x.startswith("Cost: ")]
    return [x.split("|")[:-3] if x.startswith("|") else x for x in lines]


@pytest.mark.parametrize("bad, message", [
    (["--grid", "lr=1e-3,fast"], "setting 'lr'"),
    (["--grid", "nonsense=1"], "unknown setting 'nonsense'"),
    (["--jobs", "0"], "--jobs and --seeds must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--set", "bogus=1"], "unknown setting 'bogus'"),
    (["--dataset", "zhihu", "--data-dir", "/nonexistent"], "zhihu"),
])
def test_tune_checks_every_point_before_training(tmp_path, capsys, bad, message):
    from harness.tune import main as tune_main

    assert tune_main(["--results-dir", str(tmp_path / "res"), "--jobs", "2", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "res").exists()


def test_tune_rejects_a_malformed_grid(capsys):
    from harness.tune import main as tune_main

    assert tune_main(["--grid", "lr"]) == 2
    assert "--grid takes KEY=V1,V2" in capsys.readouterr().err


def test_nan_scores_fail_the_run_with_a_message(tmp_path, monkeypatch, capsys):
    from dreamrec.model import DreamRec

    monkeypatch.setattr(DreamRec, "item_scores", lambda self, x: torch.full(
        (x.shape[0], self.n_items), float("nan")))
    assert run(tmp_path, "--seeds", "1", *FAST) == 1
    rec = json.loads(store.record_path(tmp_path / "res", "ml-100k", "dreamrec", "validation", 0).read_text())
    assert rec["status"] == "failed" and "non-finite scores" in rec["error"]
    assert "0/1 (1 failed)" in capsys.readouterr().out


def test_a_baseline_runs_records_and_resumes_like_dreamrec(tmp_path, capsys):
    args = ["--model", "gru4rec", "--dataset", "ml-100k", "--results-dir", str(tmp_path / "res"),
            "--seeds", "1", "--protocol", "both", "--set", "max_epochs=1", "--threads", "1",
            "--no-progress"]
    assert main(args) == 0
    for protocol in ("validation", "published"):
        rec = json.loads(store.record_path(tmp_path / "res", "ml-100k", "gru4rec", protocol, 0)
                         .read_text())
        assert rec["status"] == "ok" and rec["model"] == "gru4rec"
        assert rec["config"]["model"]["n_negatives"] == 1 and rec["config"]["model"]["loss"] == "bce"
        assert rec["config"]["train"]["eval_every"] == 1
    capsys.readouterr()
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().err


def test_tune_searches_the_papers_grid_unless_told_otherwise():
    from harness.tune import PAPER_GRID, parse_grid

    assert parse_grid([], "sasrec") == PAPER_GRID
    assert len(PAPER_GRID["lr"]) * len(PAPER_GRID["weight_decay"]) == 30
    assert parse_grid([], "dreamrec") == {"lr": PAPER_GRID["lr"]}  # the paper tunes lr only
    assert parse_grid(["lr=1e-3", "dropout_prob=0.2,0.5"], "gru4rec") == {
        "lr": ["1e-3"], "weight_decay": PAPER_GRID["weight_decay"], "dropout_prob": ["0.2", "0.5"]}


def _comparable(rec):
    """A record without the fields that differ between two runs of the same training."""
    return {k: v for k, v in rec.items() if k not in ("wall", "created", "git")}


@pytest.mark.parametrize("model, sig", [("dreamrec", signal.SIGKILL), ("gru4rec", signal.SIGTERM)])
def test_a_run_stopped_mid_way_resumes_from_its_last_evaluation_with_the_same_result(
        tmp_path, capsys, model, sig):
    args = ["--model", model, "--dataset", "ml-100k", "--seeds", "1", "--protocol", "both",
            "--set", "max_epochs=5", "--set", "eval_every=1", "--no-progress", "--threads", "1"]
    args += {"dreamrec": ["--set", "timesteps=5", "--set", "hidden_size=16",
                          "--set", "batch_size=1024"],
             "gru4rec": ["--set", "embedding_size=16", "--set", "hidden_size=16",
                         "--set", "batch_size=1024"]}[model]
    assert main([*args, "--results-dir", str(tmp_path / "ref")]) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", *args, "--results-dir", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # one line per evaluation; the checkpoint follows each
        seen.append(line)
        if " epoch 1:" in line:
            proc.send_signal(sig)
            break
    t0 = time.monotonic()
    rest = proc.stderr.read()
    proc.wait()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, "".join(seen)
    else:  # stopped within seconds, one line, the shell's exit status; no traceback
        assert time.monotonic() - t0 < 10
        assert proc.returncode == 128 + sig, "".join(seen) + rest
        assert rest.strip().splitlines()[-1] == (
            "interrupted: 0 runs finished, 1 resumable; rerun the same command to continue")
        assert "Traceback" not in rest
    ckpt = store.checkpoint_path(killed, "ml-100k", model, 0)
    assert ckpt.exists()
    assert not store.record_path(killed, "ml-100k", model, "validation", 0).exists()
    capsys.readouterr()
    assert main([*args, "--results-dir", str(killed)]) == 0
    # the time it prints is every stretch's, as its record counts it, not the last process's
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("seed 0: epochs"))
    got = json.loads(store.record_path(killed, "ml-100k", model, "validation", 0).read_text())
    assert line.endswith(f", {60 * store.record_minutes(got):.0f} s over its stretches")
    assert not ckpt.exists()  # removed once the records are written
    assert not (killed / "checkpoints").exists()  # and the folders it leaves empty
    for protocol in ("validation", "published"):
        ref = json.loads(store.record_path(tmp_path / "ref", "ml-100k", model, protocol, 0).read_text())
        got = json.loads(store.record_path(killed, "ml-100k", model, protocol, 0).read_text())
        assert got["wall"]["resumed"] is True and ref["wall"]["resumed"] is False
        assert _comparable(got) == _comparable(ref)


@pytest.mark.parametrize("where", ["read-only", "under a file"])
def test_an_unwritable_results_dir_fails_before_any_work(tmp_path, capsys, where):
    from harness.reproduce_table1 import main as table_main
    from harness.tune import main as tune_main

    if where == "read-only":
        bad = Path("/proc/harness-results")  # /proc takes no new files, even as root
    else:
        (tmp_path / "file").write_text("")
        bad = tmp_path / "file" / "res"
    for command in (lambda: main(["--results-dir", str(bad), *FAST]),
                    lambda: table_main(["--models", "gru4rec", "--datasets", "ml-100k",
                                        "--results-dir", str(bad)]),
                    lambda: tune_main(["--results-dir", str(bad), "--grid", "lr=1e-3", *FAST])):
        assert command() == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "is not writable" in err and "\n" not in err
        assert "--results-dir" in err


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path, capsys):
    args = ["--dataset", "ml-100k", "--results-dir", str(tmp_path), *FAST]
    ckpt = store.checkpoint_path(tmp_path, "ml-100k", "dreamrec", 0)
    ckpt.parent.mkdir(parents=True)
    torch.save({"key": "another-config:validation", "epoch": 1}, ckpt)
    assert main([*args, "--seeds", "1"]) == 0
    rec = json.loads(store.record_path(tmp_path, "ml-100k", "dreamrec", "validation", 0).read_text())
    assert rec["wall"]["resumed"] is False and rec["epochs_run"] == 2


def test_a_killed_tuning_driver_takes_its_trials_with_it_and_the_rerun_resumes_them(tmp_path):
    """Ray Tune trials on a local Ray (--jobs 2): the driver is killed outright after the first
    evaluation; its trials die with it, and the same command resumes them from their
    checkpoints and finishes the search."""
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "harness.tune", "--model", "gru4rec", "--dataset", "ml-100k",
           "--grid", "lr=1e-2,1e-3", "--grid", "weight_decay=1e-6", "--no-write-config",
           "--results-dir", str(res), "--jobs", "2", "--threads", "1", "--device", "cpu",
           "--set", "embedding_size=16", "--set", "hidden_size=16", "--set", "batch_size=1024",
           "--set", "eval_every=1", "--set", "max_epochs=6"]
    logs = res / "logs" / "tuning" / "ml-100k" / "gru4rec"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not any(
            re.search(r" epoch [1-9]:", p.read_text()) for p in logs.glob("*.log")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30  # the local Ray notices its driver is gone
    while time.time() < deadline and subprocess.run(
            ["pgrep", "-f", f"harness.run .*{res}"], capture_output=True).stdout:
        time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", f"harness.run .*{res}"],
                          capture_output=True).stdout == b""
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    resumed = [p for p in logs.glob("*.log") if "resumed after epoch" in p.read_text()]
    assert resumed, "no trial resumed from its checkpoint"
    for lr in ("1e-2", "1e-3"):
        point = res / "tuning" / "ml-100k" / "gru4rec" / f"lr={lr},weight_decay=1e-6"
        rec = json.loads(store.record_path(point, "ml-100k", "gru4rec", "validation", 0).read_text())
        assert rec["status"] == "ok" and rec["epochs_run"] == 6


def _stopping_records(tmp_path, epochs_run: dict[int, int], failed: tuple[int, ...] = ()
                      ) -> list[str]:
    """A GRU4Rec config file of one epoch and fake validation records of it (the given epochs
    run a seed; the ``failed`` seeds failed) in tmp_path/res; the arguments of a patience check
    of that config."""
    from harness import run as run_mod
    import harness.models

    cfg = tmp_path / "gru4rec.toml"
    cfg.write_text((harness.models.CONFIG_DIR / "ml-100k" / "gru4rec.toml").read_text()
                   .replace("max_epochs = 1000", "max_epochs = 1"))
    ref = run_mod.prepare(run_mod.build_parser().parse_args(
        ["--model", "gru4rec", "--dataset", "ml-100k", "--config", str(cfg),
         "--results-dir", str(tmp_path / "res")]))
    for seed, epochs in epochs_run.items():
        path = store.record_path(ref.home, "ml-100k", "gru4rec", "validation", seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"schema": store.SCHEMA, "config_hash": ref.chash,
                                    "seed": seed, "epochs_run": epochs,
                                    "status": "failed" if seed in failed else "ok"}))
    return ["--model", "gru4rec", "--dataset", "ml-100k", "--config", str(cfg), "--seeds", "1",
            "--seed-stopping-first", str(tmp_path / "res"), "--set", "patience=30",
            "--results-dir", str(tmp_path / "checks"), "--threads", "1", "--no-progress"]


def test_a_patience_check_reruns_the_seed_that_stopped_first(tmp_path):
    # seeds 1 and 3 stopped first (after 12 epochs; 1 is the lower); seed 2 failed in epoch 1
    args = _stopping_records(tmp_path, {0: 40, 1: 12, 2: 1, 3: 12, 4: 30}, failed=(2,))
    assert main(args) == 0
    recorded = sorted(p.name for p in (tmp_path / "checks").rglob("validation/seed*.json"))
    assert recorded == ["seed1.json"]
    rec = json.loads(next((tmp_path / "checks").rglob("validation/seed1.json")).read_text())
    assert rec["seed"] == 1 and rec["config"]["train"]["patience"] == 30


def test_a_patience_check_without_recorded_seeds_or_with_more_than_one_is_refused(tmp_path,
                                                                                   capsys):
    args = _stopping_records(tmp_path, {})
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holds no finished run of gru4rec on ml-100k" in err and "run its seeds first" in err
    assert not (tmp_path / "checks").exists()
    args = _stopping_records(tmp_path, {0: 5})
    assert main([*args, "--seeds", "3"]) == 2
    assert "pass --seeds 1" in capsys.readouterr().err
    assert not (tmp_path / "checks").exists()
