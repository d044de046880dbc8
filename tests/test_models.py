"""Config files: one per dataset x model, all loadable; the config hash and its optional keys."""

import dataclasses
import json
from pathlib import Path

import pytest

from dreamrec.model import DreamRecConfig
from harness.data import DATASETS
from harness.models import MODELS, read_config_file, render_config
from harness.run import record_base
from harness.train import TrainConfig
from tests.helpers import chain_splits


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_dataset_and_model_has_a_config_file_holding_every_setting(dataset, name):
    """Every setting is in the file, except options added later (``HASHED_IF_SET``), which a
    file may leave out (they then hold their default)."""
    spec = MODELS[name]
    path = spec.config_path(dataset)
    kw = read_config_file(path, spec.config_cls)
    every = {f.name for f in dataclasses.fields(spec.config_cls)}
    optional = set(getattr(spec.config_cls, "HASHED_IF_SET", ()))  # may be left at the default
    assert every - optional <= set(kw["model"]) <= every
    assert set(kw["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    model_cfg, train_cfg = spec.configs(dataset)
    if name != "dreamrec":
        assert train_cfg.batch_size == 256  # the paper's protocol
    size_field = {"gru4rec": "embedding_size", "caser": "embedding_size", "diffrec": None}.get(
        name, "hidden_size")
    if size_field:
        assert getattr(model_cfg, size_field) == 64  # the paper's embedding size


def test_a_rendered_config_reads_back_to_the_same_settings(tmp_path):
    spec = MODELS["diffrec"]
    model_cfg, train_cfg = spec.configs("zhihu", {"dims_dnn": "200,600", "lr": "5e-4"})
    path = tmp_path / "c.toml"
    path.write_text(render_config(model_cfg, train_cfg, "a header\nover two lines"))
    assert path.read_text().startswith("# a header\n# over two lines\n")
    again = spec.configs("zhihu", config_file=path)
    assert again == (model_cfg, train_cfg) and again[0].dims_dnn == (200, 600)


def test_optional_train_settings_enter_the_config_hash_only_when_set():
    spec, splits = MODELS["sasrec"], chain_splits()
    model_cfg, train_cfg = spec.configs("zhihu")
    plain = record_base(spec, "zhihu", splits, model_cfg, train_cfg)[1]
    without = dataclasses.asdict(train_cfg)
    for key in TrainConfig.HASHED_IF_SET:  # mask_history, flush_denormal
        del without[key]
    from harness import store
    expect = store.config_hash({"dataset": "zhihu", "model": "sasrec", "data_checksum": splits.checksum,
                                "config": {"model": dataclasses.asdict(model_cfg), "train": without}})
    assert plain == expect  # records made before the option existed keep their hash
    masked = record_base(spec, "zhihu", splits, model_cfg,
                         dataclasses.replace(train_cfg, mask_history=True))[1]
    assert masked != plain


def test_committed_dreamrec_records_keep_their_hash_with_the_sampler_settings_at_default():
    """The sampler options were added after these records: at their defaults they stay out of
    the hash, so the records are still recognised as done."""
    from harness import store
    from harness.run import hashed_fields
    recs = sorted((Path(__file__).resolve().parents[1] / "results" / "records").glob("*/dreamrec/validation/seed*.json"))
    if not recs:
        pytest.skip("no committed DreamRec records in this checkout")
    for path in recs:
        rec = json.loads(path.read_text())
        model_cfg = DreamRecConfig(**rec["config"]["model"])
        train_cfg = TrainConfig(**rec["config"]["train"])
        payload = {"dataset": rec["dataset"], "model": "dreamrec", "data_checksum": rec["data_checksum"],
                   "config": {"model": hashed_fields(model_cfg), "train": hashed_fields(train_cfg)}}
        assert store.config_hash(payload) == rec["config_hash"], path
        ddim = dataclasses.replace(model_cfg, sampler="ddim", steps=50)
        payload["config"]["model"] = hashed_fields(ddim)
        assert store.config_hash(payload) != rec["config_hash"]


def test_committed_diffrec_records_keep_their_hash_with_the_time_aware_settings_at_default():
    """``time_aware``, ``w_min`` and ``w_max`` were added after some of these records (those
    whose config lacks them): at their defaults they stay out of the hash, so the records made
    before and after hash alike; set, they enter it."""
    from harness import store
    from harness.run import hashed_fields
    recs = sorted((Path(__file__).resolve().parents[1] / "results").glob(
        "**/records/*/diffrec/validation/seed*.json"))
    if not recs:
        pytest.skip("no committed DiffRec records in this checkout")
    spec = MODELS["diffrec"]
    before = [p for p in recs if "time_aware" not in json.loads(p.read_text())["config"]["model"]]
    assert before, "the records made before the option are the point of this test"
    for path in recs:
        rec = json.loads(path.read_text())
        assert rec["config"]["model"].get("time_aware", False) is False
        model_cfg = spec.config_cls(**rec["config"]["model"])
        train_cfg = TrainConfig(**rec["config"]["train"])
        payload = {"dataset": rec["dataset"], "model": "diffrec",
                   "data_checksum": rec["data_checksum"],
                   "config": {"model": hashed_fields(model_cfg), "train": hashed_fields(train_cfg)}}
        assert store.config_hash(payload) == rec["config_hash"], path
        for change in ({"time_aware": True}, {"w_min": 0.2}):
            payload["config"]["model"] = hashed_fields(dataclasses.replace(model_cfg, **change))
            assert store.config_hash(payload) != rec["config_hash"], change


def test_every_other_config_file_is_valid_for_its_model():
    """``<model>.<name>.toml`` files (presets, rows beyond the paper, figure-only settings)
    load as their model's settings on their dataset."""
    files = sorted(Path(MODELS["dreamrec"].config_path("zhihu")).parent.parent.glob("*/*.*.toml"))
    assert len(files) >= 10
    for path in files:
        model = path.name.split(".")[0]
        MODELS[model].configs(path.parent.name, None, path)  # raises on a bad file


def test_a_config_file_that_extends_another_takes_its_settings_and_replaces_its_own(tmp_path):
    spec = MODELS["sasrec"]
    (tmp_path / "base.toml").write_text('[model]\nn_negatives = 1\nhidden_size = 32\n'
                                        '[train]\nlr = 0.01\npatience = 7\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\n[model]\nn_negatives = 0\n'
                                         '[train]\nlr = 0.002\n')
    model, train = spec.configs("zhihu", config_file=tmp_path / "child.toml")
    assert (model.n_negatives, model.hidden_size, train.lr, train.patience) == (0, 32, 0.002, 7)
    # the base's change reaches the file that extends it
    (tmp_path / "base.toml").write_text('[model]\nhidden_size = 48\n')
    model, train = spec.configs("zhihu", config_file=tmp_path / "child.toml")
    assert (model.n_negatives, model.hidden_size, train.lr) == (0, 48, 0.002)


@pytest.mark.parametrize("files, message", [
    ({"a.toml": 'extends = "a.toml"\n'}, "comes back to itself"),
    ({"a.toml": 'extends = "b.toml"\n', "b.toml": 'extends = "a.toml"\n'}, "comes back to itself"),
    ({"a.toml": 'extends = "missing.toml"\n'}, "missing.toml not found"),
    ({"a.toml": "extends = 3\n"}, "extends must name a config file"),
    ({"a.toml": 'extends = "b.toml"\n', "b.toml": "[model]\nno_such = 1\n"}, "unknown setting 'no_such'"),
])
def test_a_bad_extends_is_one_line_error(tmp_path, files, message):
    from harness.errors import HarnessError
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(HarnessError, match=message):
        MODELS["sasrec"].configs("zhihu", config_file=tmp_path / "a.toml")


def test_sasrec_positives_is_sasrec_without_negatives_wherever_it_exists():
    spec = MODELS["sasrec"]
    paths = sorted((Path(__file__).resolve().parent.parent / "harness" / "configs").glob(
        "*/sasrec.positives.toml"))
    assert len(paths) >= 2  # zhihu and ml-100k
    for path in paths:
        dataset = path.parent.name
        pos_model, pos_train = spec.configs(dataset, config_file=path)
        model, train = spec.configs(dataset)
        assert pos_model == dataclasses.replace(model, n_negatives=0) and pos_train == train
