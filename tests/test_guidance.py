"""``python -m harness.guidance``: one training per seed, every w selected as its own run."""

import json

import pytest

from harness import guidance, store
from harness.run import main as run_main

# w=2 whatever the config file's tuned w is, so that the sweep's own w is one of the swept ones
TINY = ["--set", "eval_every=1", "--set", "max_epochs=3", "--set", "timesteps=5",
        "--set", "hidden_size=16", "--set", "w=2", "--threads", "1"]


def test_sweep_reproduces_the_run_at_the_config_w_and_renders(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "models"))
    res = tmp_path / "res"
    assert run_main(["--dataset", "ml-100k", "--results-dir", str(res), "--seeds", "1",
                     "--no-progress", *TINY]) == 0
    assert guidance.main(["--dataset", "ml-100k", "--w", "0,2,6", "--seeds", "1",
                          "--results-dir", str(res), *TINY]) == 0
    rec = json.loads(guidance.seed_path(res, "ml-100k", 0).read_text())
    assert rec["own_w"] == 2.0 and rec["own_w_matches_run_record"] is True
    assert list(rec["w"]) == ["w=0", "w=2", "w=6"]
    run = json.loads(store.record_path(res, "ml-100k", "dreamrec", "validation", 0).read_text())
    assert rec["w"]["w=2"]["test"] == run["test"]
    assert rec["w"]["w=2"]["selected_epoch"] == run["selected_epoch"]
    for r in rec["w"].values():
        assert [e for e, _ in r["val_curve"]][:1] == [0]
        best = max(r["val_curve"], key=lambda c: (c[1]["ndcg@20"], c[1]["hr@20"]))
        assert r["selected_epoch"] == best[0] and r["val"] == best[1]
    assert not store.checkpoint_path(res, "ml-100k", "dreamrec-guidance", 0).exists()
    saved = store.load_state(store.state_path(tmp_path / "models", "ml-100k", "dreamrec",
                                              run["config_hash"], 0))
    assert saved["selected_epoch"] == run["selected_epoch"]
    md = (res / "guidance.md").read_text()
    assert "| 2 (config)" in md and "## ml-100k" in md
    for ext in ("png", "pdf"):
        assert (res / "figures" / f"guidance.{ext}").stat().st_size > 1000
    capsys.readouterr()
    assert guidance.main(["--dataset", "ml-100k", "--w", "0,2", "--seeds", "1",
                          "--results-dir", str(res), *TINY]) == 0
    assert "every w already measured" in capsys.readouterr().err
    # a sweep of another config (a retuned lr) sets the old sweep aside instead of replacing it
    assert guidance.main(["--dataset", "ml-100k", "--w", "0,2", "--seeds", "1",
                          "--results-dir", str(res), *TINY, "--set", "lr=0.002"]) == 0
    new = json.loads(guidance.seed_path(res, "ml-100k", 0).read_text())
    aside = store.variant_dir(res, rec["config_hash"]) / "guidance" / "ml-100k" / "seed0.json"
    assert new["config_hash"] != rec["config_hash"] and json.loads(aside.read_text()) == rec
    assert "another config's sweep, moved to" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--w", "a,b"], "--w takes comma-separated numbers"),
    (["--w", "-1"], "--w takes guidance strengths >= 0"),
    (["--render-only"], "no guidance records"),
])
def test_bad_input(tmp_path, capsys, args, message):
    assert guidance.main(["--results-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_diagnose_reports_concentration_and_names_a_missing_state(tmp_path, capsys, monkeypatch):
    from harness import diagnose
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "models"))
    sets = ["--set", "eval_every=1", "--set", "max_epochs=1", "--set", "timesteps=5",
            "--set", "hidden_size=16"]
    assert diagnose.main(["--dataset", "ml-100k", *sets]) == 2
    assert "no saved state for dreamrec on ml-100k" in capsys.readouterr().err
    assert run_main(["--dataset", "ml-100k", "--results-dir", str(tmp_path / "res"), "--seeds", "1",
                     "--save-model", "--no-progress", "--threads", "1", *sets]) == 0
    out = tmp_path / "d.md"
    assert diagnose.main(["--dataset", "ml-100k", *sets, "--threads", "-1"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    threads = []
    monkeypatch.setattr(diagnose.torch, "set_num_threads", threads.append)
    assert diagnose.main(["--dataset", "ml-100k", *sets, "--out", str(out), "--threads", "1"]) == 0
    assert threads and set(threads) == {1}  # one thread beside a campaign's other job, when asked
    monkeypatch.undo()
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "models"))
    # the same state against itself: the same draws, the same lists; against w = 0: scored anew
    w = json.loads(store.record_path(tmp_path / "res", "ml-100k", "dreamrec", "validation",
                                     0).read_text())["config"]["model"]["w"]
    assert diagnose.main(["--dataset", "ml-100k", *sets, "--out", str(out), "--threads", "1",
                          "--against", f"w={w}"]) == 0
    rows = [line for line in out.read_text().split("Against")[1].splitlines()
            if line.startswith(("| val", "| test"))]
    for line in rows:
        split, hr, hr_against, overlap, same = [c.strip() for c in line.strip("|").split("|")]
        assert hr == hr_against and float(overlap) == 1.0 and float(same) == 100.0
    assert diagnose.main(["--dataset", "ml-100k", *sets, "--against", "w=0"]) == 0
    assert "mean top-20 overlap" in capsys.readouterr().out
    assert diagnose.main(["--dataset", "ml-100k", *sets, "--against", "lr=1"]) == 2
    assert "include training settings" in capsys.readouterr().err
    assert diagnose.main(["--dataset", "ml-100k", *sets, "--against", "hidden_size=8"]) == 2
    assert "changes dreamrec's parameters" in capsys.readouterr().err
    text = out.read_text()
    run = json.loads(store.record_path(tmp_path / "res", "ml-100k", "dreamrec", "validation", 0).read_text())
    test_row = next(line for line in text.splitlines() if line.startswith("| test"))
    cells = [c.strip() for c in test_row.strip("|").split("|")]
    assert float(cells[2]) == pytest.approx(100 * run["test"]["hr@20"], abs=0.006)  # as the run scored
    assert float(cells[3]) == pytest.approx(100 * run["test"]["coverage@20"], abs=0.006)
    assert "Item embedding norms" in text
