"""``python -m harness.sampling``: DDPM against DDIM on saved or retrained states, resumable."""

import csv
import json

import pytest

from harness import sampling, store
from harness.bench import parse_samplers
from harness.errors import HarnessError
from harness.run import main as run_main

TINY = ["--set", "eval_every=1", "--set", "max_epochs=1", "--set", "timesteps=20",
        "--set", "hidden_size=16", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sampling")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_MODEL_DIR", str(tmp / "models"))
    res = tmp / "res"
    # seed 0: a run record and its saved state; seed 1: a run record only
    assert run_main(["--dataset", "ml-100k", "--results-dir", str(res), "--seeds", "1",
                     "--save-model", "--no-progress", *TINY]) == 0
    assert run_main(["--dataset", "ml-100k", "--results-dir", str(res), "--seeds", "1",
                     "--first-seed", "1", "--no-progress", *TINY]) == 0
    rc = sampling.main(["--dataset", "ml-100k", "--results-dir", str(res), "--seeds", "2",
                        "--steps", "2,5,50", *TINY])
    yield tmp, res, rc
    mp.undo()


def test_every_sampler_is_measured_on_the_selected_state_and_ddpm_reproduces_the_run(trained, capsys):
    tmp, res, rc = trained
    assert rc == 0
    for seed, source in ((0, "saved state"), (1, "trained here")):
        rec = json.loads(sampling.seed_path(res, "ml-100k", seed).read_text())
        assert rec["state"].startswith(source)
        assert list(rec["variants"]) == ["ddpm-T20", "ddim-k2-eta0", "ddim-k5-eta0"]  # 50 > T
        assert rec["ddpm_matches_run_record"] is True
        run = json.loads(store.record_path(res, "ml-100k", "dreamrec", "validation", seed).read_text())
        assert rec["selected_epoch"] == run["selected_epoch"]
        ddpm = rec["variants"]["ddpm-T20"]
        assert ddpm["test"] == run["test"]
        assert ddpm["test_ranks_sha"] == store.array_digest(store.read_ranks(
            store.record_path(res, "ml-100k", "dreamrec", "validation", seed)))
        assert rec["variants"]["ddim-k2-eta0"]["steps"] == 2 and all(
            v["gen_s"] > 0 for v in rec["variants"].values())
    # seed 1 was trained here and its state kept: a second pass reads it
    assert (tmp / "models" / "ml-100k" / "dreamrec").is_dir()


def test_rerun_measures_only_missing_samplers_and_renders_every_output(trained, capsys):
    tmp, res, _ = trained
    path = sampling.seed_path(res, "ml-100k", 0)
    before = json.loads(path.read_text())["variants"]
    assert sampling.main(["--dataset", "ml-100k", "--results-dir", str(res), "--seeds", "1",
                          "--steps", "2,5,10", *TINY]) == 0
    err = capsys.readouterr().err
    assert "ddim-k10-eta0" in err and "ddim-k2-eta0" not in err and "dreamrec/ml-100k" not in err
    after = json.loads(path.read_text())
    assert after["state"].startswith("saved state")
    assert {k: after["variants"][k] for k in before} == before
    md = (res / "sampling.md").read_text()
    assert "## ml-100k" in md and "| DDPM" in md and "DDIM" in md and "test coverage@20" in md
    rows = list(csv.DictReader((res / "sampling.csv").open()))
    k10 = next(r for r in rows if r["variant"] == "ddim-k10-eta0")
    assert k10["seeds"] == "1" and next(r for r in rows if r["variant"] == "ddpm-T20")["seeds"] == "2"
    for ext in ("png", "pdf"):
        assert (res / "figures" / f"sampling.{ext}").stat().st_size > 1000


def test_a_foreign_seed_file_is_reported_and_left_out(trained, capsys):
    _, res, _ = trained
    bad = res / "sampling" / "ml-100k" / "seed9.json"
    bad.write_text("{not json")
    try:
        assert sampling.main(["--results-dir", str(res), "--render-only"]) == 0
        assert f"{bad} is not a sampling record" in capsys.readouterr().err
    finally:
        bad.unlink()


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps takes positive step counts"),
    (["--steps", "a,b"], "--steps takes comma-separated integers"),
    (["--eta", "2"], r"--eta values must lie in [0, 1]"),
    (["--dataset", "movielens"], "unknown dataset"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert sampling.main(["--results-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "sampling.md").exists()


def test_render_without_records_says_how_to_make_them(tmp_path, capsys):
    assert sampling.main(["--results-dir", str(tmp_path), "--render-only"]) == 2
    assert "run python -m harness.sampling --dataset zhihu first" in capsys.readouterr().err


def test_bench_sampler_list():
    assert parse_samplers("ddpm, ddim:50") == [("ddpm", 0), ("ddim", 50)]
    for bad in ("ddim", "plms:5", "ddim:x"):
        with pytest.raises(HarnessError, match="--samplers takes ddpm or ddim:K"):
            parse_samplers(bad)


def test_bench_times_any_models_evaluation_and_keeps_samplers_for_dreamrec(tmp_path, capsys):
    from harness import bench

    out = tmp_path / "bench.md"
    assert bench.main(["--model", "gru4rec", "--dataset", "ml-100k", "--threads", "1",
                       "--epochs", "0", "--repeats", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("`python -m harness.bench --model gru4rec") and "gru4rec on ml-100k" in text
    row = text.strip().splitlines()[-1].split("|")  # | threads | val+test eval s |
    assert int(row[1]) == 1 and float(row[2]) > 0 and "Generation" not in text
    capsys.readouterr()
    assert bench.main(["--model", "sasrec", "--samplers", "ddim:50"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --samplers is DreamRec's; sasrec is evaluated through its "
                   "full_sort_predict (drop --samplers)")


def test_saved_state_round_trips_and_garbage_reads_as_absent(tmp_path):
    import torch
    path = tmp_path / "s.pt"
    store.save_state(path, {"w": torch.arange(3.0)}, selected_epoch=4, config_hash="abc")
    saved = store.load_state(path)
    assert saved["selected_epoch"] == 4 and torch.equal(saved["state_dict"]["w"], torch.arange(3.0))
    path.write_bytes(b"garbage")
    assert store.load_state(path) is None and store.load_state(tmp_path / "absent.pt") is None


def test_gpu_script_reports_times_and_concurrent_throughput(tmp_path):
    """The GPU script, checked on the CPU with a tiny model: both tables, one row per N."""
    from harness import bench_gpu
    out = tmp_path / "gpu.md"
    assert bench_gpu.main(["--device", "cpu", "--datasets", "ml-100k", "--jobs", "1,2",
                           "--budget-epochs", "1", "--set", "timesteps=5", "--set", "hidden_size=16",
                           "--set", "eval_every=1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Device: CPU" in text
    single = next(line for line in text.splitlines() if line.startswith("| ml-100k"))
    cells = [c.strip() for c in single.strip("|").split("|")]
    assert cells[1] == "82552" and float(cells[4]) > 0 and float(cells[5]) > 0
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "runs per hour" in line)
    rows = [line for line in lines[head + 2:] if line.startswith("|")]
    assert [int(line.strip("|").split("|")[0]) for line in rows] == [1, 2]
    for line in rows:
        n, wall, per_hour, _ = (float(c) for c in line.strip("|").split("|"))
        assert per_hour == pytest.approx(n * 3600 / wall, rel=0.01)


def test_gpu_script_rejects_bad_job_counts(capsys):
    from harness import bench_gpu
    assert bench_gpu.main(["--device", "cpu", "--jobs", "two"]) == 2
    assert "--jobs takes comma-separated integers" in capsys.readouterr().err
