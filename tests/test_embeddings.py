"""``python -m harness.embeddings``: uniformity, norms and the t-SNE map from kept states."""

import json
import re
import shutil

import pytest
import torch

from harness import embeddings


def test_uniformity_is_zero_for_one_direction_and_falls_as_items_spread():
    same = torch.tensor([[1.0, 0.0], [2.0, 0.0], [5.0, 0.0]])
    assert embeddings.uniformity(same) == pytest.approx(0.0, abs=1e-12)
    opposite = torch.tensor([[1.0, 0.0], [-3.0, 0.0]])  # |x - y|^2 = 4 on the unit circle
    assert embeddings.uniformity(opposite) == pytest.approx(-8.0)
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(300, 8, generator=g)
    squeezed = spread * torch.tensor([1.0] + [0.05] * 7)
    assert embeddings.uniformity(spread) < embeddings.uniformity(squeezed) < 0
    big = torch.randn(embeddings.PAIR_BLOCK + 37, 4, generator=g)  # more than one block
    x = torch.nn.functional.normalize(big.double(), dim=1)
    d2 = torch.cdist(x, x) ** 2
    iu = torch.triu_indices(len(x), len(x), 1)
    assert embeddings.uniformity(big) == pytest.approx(
        float(torch.log(torch.exp(-2 * d2[iu[0], iu[1]]).mean())), rel=1e-9)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    import harness.models

    root = tmp_path / "configs"
    shutil.copytree(harness.models.CONFIG_DIR, root)
    monkeypatch.setattr(harness.models, "CONFIG_DIR", root)
    monkeypatch.setattr(embeddings, "CONFIG_DIR", root)
    monkeypatch.setenv("HARNESS_MODEL_DIR", str(tmp_path / "models"))
    for name in ("sasrec", "dreamrec"):  # sasrec.positives extends sasrec.toml
        path = root / "ml-100k" / f"{name}.toml"
        text = path.read_text()
        for key, value in (("hidden_size", 16), ("inner_size", 32), ("n_layers", 1),
                           ("max_epochs", 1), ("timesteps", 5), ("batch_size", 1024)):
            text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        path.write_text(text)
    return tmp_path


def test_missing_states_are_named_with_the_command_and_nothing_is_written(tiny, capsys):
    res = tiny / "res"
    assert embeddings.main(["--dataset", "ml-100k", "--rows", "sasrec.positives",
                            "--results-dir", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no kept state for sasrec.positives" in err
    assert "--config" in err and "--save-model" in err
    assert not res.exists() or not any(res.rglob("*.json"))
    assert embeddings.main(["--dataset", "ml-100k", "--rows", "sasrec.nothing"]) == 2
    assert "needs" in capsys.readouterr().err
    assert embeddings.main(["--dataset", "ml-100k", "--threads", "-1"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_tsne_maps_every_item_to_two_coordinates_reproducibly():
    table = torch.randn(60, 8, generator=torch.Generator().manual_seed(0)).numpy()
    a, b = embeddings.tsne_map(table, 0), embeddings.tsne_map(table, 0)
    assert a.shape == (60, 2) and (a == b).all()


def test_the_map_and_the_numbers_of_each_row(tiny, monkeypatch):
    # scikit-learn's t-SNE over ml-100k's 1,682 items takes most of a minute: a stand-in map here
    monkeypatch.setattr(embeddings, "tsne_map", lambda table, seed: table[:, :2])
    res = tiny / "res"
    threads = []
    monkeypatch.setattr(embeddings.torch, "set_num_threads", threads.append)
    assert embeddings.main(["--dataset", "ml-100k", "--rows", "sasrec.positives,dreamrec",
                            "--train", "--results-dir", str(res), "--threads", "1"]) == 0
    assert threads and set(threads) == {1}  # the training it asked for too
    for row in ("sasrec.positives", "dreamrec"):
        rec = json.loads((res / "embeddings" / "ml-100k" / f"{row}-seed0.json").read_text())
        assert len(rec["tsne"]) == rec["n_items"] and len(rec["tsne"][0]) == 2
        assert -10 < rec["uniformity"] <= 0
        assert rec["norms"]["training targets"]["n"] + rec["norms"].get(
            "never training targets", {}).get("n", 0) == rec["n_items"]
        assert "never in a training history" in rec["norms"]
    dream = json.loads((res / "embeddings" / "ml-100k" / "dreamrec-seed0.json").read_text())
    assert dream["norms"]["training targets"]["median"] == pytest.approx(4.0, rel=0.5)  # N(0, I), H=16
    assert (res / "figures" / "fig3_tsne-ml-100k.png").exists()
    md = (res / "embeddings-ml-100k.md").read_text()
    assert "| sasrec.positives" in md and "norm, never in a history" in md
    assert (res / "records" / "ml-100k" / "dreamrec" / "validation" / "seed0.json").exists()
