"""One training loop for every model: seeded shuffles, periodic validation, early stopping.

Selection is on validation only: the state with the best val NDCG@20 (ties by HR@20) is kept and
test is evaluated once, on that state. ``published=True`` additionally evaluates test at every
evaluation and reports the evaluation with the best *test* NDCG@20 -- how the official DreamRec
printout is usually read; records label it as test-selected.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from baselines.contract import Batch, SequentialRecommender
from harness import store
from harness.data import SequenceSplits
from harness.errors import HarnessError
from harness.evaluate import Evaluation, evaluate
from kernels.memory import reuse_freed_memory


@dataclass
class TrainConfig:
    """Optimisation and selection settings (AdamW, as in the paper)."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    max_epochs: int = 1000
    eval_every: int = 5
    patience: int = 10  # evaluations without a gain in val NDCG@20 before stopping
    eval_batch_size: int = 4096
    mask_history: bool = False  # evaluation: drop each row's history items from its ranking
    # CPU: treat subnormal floats as zero while training (torch.set_flush_denormal). Caser's
    # weights drift into the subnormal range after a few epochs, which made its epochs 4-5x
    # slower on this project's CPU; values below 1.2e-38 become 0, nothing else changes.
    flush_denormal: bool = False

    #: fields left out of the config hash while they hold their default, so that adding an
    #: option does not invalidate the records made before it existed
    HASHED_IF_SET: ClassVar[tuple[str, ...]] = ("mask_history", "flush_denormal")

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "eval_every", "patience", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def sample_negatives(target: Tensor, n_items: int, k: int,
                     generator: torch.Generator | None = None) -> Tensor:
    """``k`` negatives per row [B, k], uniform over the ``n_items - 1`` items other than the
    row's target (one draw in [0, n_items - 1), shifted past the target): never the target."""
    draw = torch.randint(0, n_items - 1, (target.shape[0], k), generator=generator,
                         device=target.device)
    return draw + (draw >= target.unsqueeze(1)).long()


def train_step(model: SequentialRecommender, opt: torch.optim.Optimizer, history: Tensor,
               length: Tensor, target: Tensor, idx: Tensor, n_items: int,
               gen: torch.Generator) -> Tensor:
    """One optimisation step on the rows ``idx``; the batch's summed loss, on the device.

    Nothing here waits for the device: no value comes back to the host, so on a GPU the steps
    of an epoch are queued back to back (a test audits every model's step for synchronising
    operations).
    """
    tg = target[idx]
    neg = sample_negatives(tg, n_items, model.n_negatives, gen) if model.n_negatives else None
    loss = model.calculate_loss(Batch(history[idx], length[idx], tg, neg, gen))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach() * idx.shape[0]


@dataclass
class EvalVariant:
    """Another way of scoring with the model being trained (DreamRec with another guidance
    strength w, say): ``score_fn(model)`` gives its ``(history, length, generator) -> scores``.

    A variant is selected on validation by the run's own rule -- best validation NDCG@20, early
    stopping after ``patience`` evaluations without a gain, the same evaluation generators --
    while the model trains once: the training does not depend on how it is scored, so the
    variant's result is the one a run of its own would give. Training goes on until every
    variant (and the run's own scoring) has stopped.
    """

    name: str
    score_fn: Callable[[SequentialRecommender], Callable[..., Tensor]]


@dataclass
class VariantResult:
    """A variant's validation-selected epoch, its val and test evaluations there, its stopping
    epoch and its validation curve [(epoch, metrics)]."""

    best_epoch: int
    stop_epoch: int
    val: Evaluation
    test: Evaluation
    curve: list[tuple[int, dict[str, float]]]


class _Selector:
    """Early-stopping and best-state bookkeeping of one variant."""

    def __init__(self, variant: EvalVariant) -> None:
        self.variant = variant
        self.best_key: tuple[float, float] | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.best_epoch = -1
        self.best_val: Evaluation | None = None
        self.bad = 0
        self.stop_epoch: int | None = None
        self.curve: list[tuple[int, dict[str, float]]] = []

    def update(self, epoch: int, val: Evaluation, model: SequentialRecommender,
               patience: int) -> None:
        self.curve.append((epoch, val.metrics))
        if self.best_key is None or _key(val.metrics) > self.best_key:
            self.best_key, self.best_epoch, self.best_val = _key(val.metrics), epoch, val
            self.best_state = copy.deepcopy(model.state_dict())
            self.bad = 0
        else:
            self.bad += 1
        if self.bad >= patience:
            self.stop_epoch = epoch

    def to_saved(self) -> dict[str, Any]:
        return {"best_key": self.best_key, "best_state": self.best_state,
                "best_epoch": self.best_epoch, "best_val": _eval_to_saved(self.best_val),
                "bad": self.bad, "stop_epoch": self.stop_epoch, "curve": self.curve}

    def load(self, d: dict[str, Any]) -> None:
        self.best_key, self.best_state, self.best_epoch = d["best_key"], d["best_state"], d["best_epoch"]
        self.best_val = _eval_from_saved(d["best_val"])
        self.bad, self.stop_epoch, self.curve = d["bad"], d["stop_epoch"], [tuple(c) for c in d["curve"]]


class TrainingDiverged(HarnessError):
    """The loss became NaN or infinite; the run is recorded as failed."""


@dataclass
class TrainResult:
    """What one training run produced; ``test`` is evaluated on the val-selected state."""

    epochs_run: int
    best_epoch: int
    val: Evaluation
    test: Evaluation
    published: tuple[int, Evaluation] | None  # (epoch, test evaluation) with best test NDCG@20
    history: list[dict[str, Any]] = field(default_factory=list)
    wall: dict[str, float] = field(default_factory=dict)
    variants: dict[str, VariantResult] = field(default_factory=dict)


def _key(metrics: dict[str, float]) -> tuple[float, float]:
    return (metrics["ndcg@20"], metrics["hr@20"])


def eval_generator(device: torch.device, seed: int, epoch: int, split: str) -> torch.Generator:
    """Generator for one evaluation pass, independent of the training stream.

    Seeded from (seed, epoch, split), so the test pass of an epoch draws the same noise whether
    it runs during training (published protocol) or once at the end (validation protocol).
    """
    offset = {"val": 1, "test": 2}[split]
    return torch.Generator(device).manual_seed(seed * 1_000_003 + epoch * 10 + offset)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from harness.store import atomic_write

    atomic_write(path, lambda fh: torch.save(state, fh))


def resume_seed(seed: int, epoch: int) -> int:
    """Seed of the model's noise generator for a run resumed at ``epoch`` on another device."""
    return seed * 1_000_003 + epoch * 10 + 5


def _saved_segments(saved: dict[str, Any]) -> list[dict[str, Any]]:
    """The checkpoint's ``segments``; a checkpoint written before they were kept is one
    segment, on CUDA when it holds a CUDA generator state (its torch version unknown)."""
    if saved.get("segments"):
        return [dict(s) for s in saved["segments"]]
    return [{"device": "cuda" if saved.get("cuda_rng") is not None else "cpu", "torch": None,
             "first_epoch": 0, "last_epoch": saved["epoch"], "generator": "not recorded"}]


def _load_checkpoint(path: Path | None, key: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it belongs to this run (same key), else None."""
    if path is None or not path.exists():
        return None
    from harness.execute import deferred

    try:
        with deferred():  # an interrupt inside torch.load would look like an unreadable file
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- an unreadable checkpoint only costs a restart
        print(f"warning: checkpoint {path} unreadable ({type(e).__name__}); starting over",
              file=sys.stderr)
        return None
    return saved if isinstance(saved, dict) and saved.get("key") == key else None


def train(model: SequentialRecommender, splits: SequenceSplits, config: TrainConfig, seed: int,
          device: torch.device, **kw: Any) -> TrainResult:
    """Train ``model`` on ``splits.train``, select on ``splits.val``, test once on ``splits.test``.

    See :func:`_train` for the arguments. With ``config.flush_denormal`` subnormal floats are
    flushed to zero for the duration of the run (and the default restored after it). Freed
    memory is kept for reuse from then on (:func:`kernels.memory.reuse_freed_memory`).
    """
    torch.set_flush_denormal(config.flush_denormal)
    reuse_freed_memory()
    try:
        return _train(model, splits, config, seed, device, **kw)
    finally:
        torch.set_flush_denormal(False)


def _eval_to_saved(ev: Evaluation | None) -> dict[str, Any] | None:
    return None if ev is None else {"ranks": torch.from_numpy(ev.ranks), "metrics": ev.metrics}


def _eval_from_saved(d: dict[str, Any] | None) -> Evaluation | None:
    return None if d is None else Evaluation(ranks=d["ranks"].numpy(), metrics=d["metrics"])


def _train(
    model: SequentialRecommender,
    splits: SequenceSplits,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    published: bool = False,
    progress: bool = True,
    desc: str = "",
    log_evals: bool = False,
    checkpoint: Path | None = None,
    checkpoint_key: str = "",
    variants: list[EvalVariant] | None = None,
) -> TrainResult:
    """The training run behind :func:`train`.

    The caller seeds torch's global generator before building the model (initialisation and
    dropout draw from it); shuffles come from ``numpy.random.default_rng(seed)`` and the model's
    own noise from a ``torch.Generator`` seeded with ``seed``. ``progress`` shows a tqdm bar;
    ``log_evals`` prints one line per evaluation to stderr instead (for logs).

    With ``checkpoint``, the whole state of the run (model, optimizer, every random generator,
    the early-stopping state and the log) is written there atomically after each evaluation,
    and a run that finds a checkpoint of the same ``checkpoint_key`` resumes from it: a run
    killed at any point and restarted gives the result it would have given uninterrupted. The
    caller removes the file once the run's records are written.

    ``variants`` (:class:`EvalVariant`) are selected alongside the run's own scoring; their
    results come back in ``TrainResult.variants``.
    """
    model.to(device)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device).manual_seed(seed)
    # fused AdamW: one kernel over all parameters (4.9x faster per step than the default
    # per-tensor loop for DreamRec on the CPU); same update rule
    opt = torch.optim.AdamW(model.param_groups(config.lr, config.weight_decay), fused=True)
    tr = splits.train
    history = torch.from_numpy(tr.history).to(device)
    length = torch.from_numpy(tr.length).to(device)
    target = torch.from_numpy(tr.target).to(device)
    model.observe_training_rows(history, length, target)
    n_rows, bs = len(tr), config.batch_size

    def run_eval(split: str, epoch: int, score_fn=None) -> Evaluation:
        model.eval()
        try:
            return evaluate(
                score_fn or model.full_sort_predict, splits.split(split), splits.n_items,
                device, config.eval_batch_size, eval_generator(device, seed, epoch, split),
                mask_history=config.mask_history,
            )
        finally:
            model.train()

    selectors = [_Selector(v) for v in variants or []]
    if len({v.name for v in variants or []}) != len(selectors):
        raise ValueError("evaluation variants need distinct names")
    own_stop: int | None = None  # epoch at which the run's own scoring stopped

    best_key: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, best_val = -1, None
    best_test: Evaluation | None = None  # published mode: the test pass of the best-val epoch
    pub: tuple[int, Evaluation] | None = None
    bad_evals = 0
    log: list[dict[str, Any]] = []
    t_train = t_eval = 0.0
    first_epoch_s = 0.0
    epoch = -1
    first = 0
    saved = _load_checkpoint(checkpoint, checkpoint_key)
    segments: list[dict[str, Any]] = []
    generator = "fresh"  # the model's noise generator in this stretch: fresh, continued or reseeded
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        segments = _saved_segments(saved)
        generator = "continued" if segments[-1]["device"] == device.type else "reseeded"
        if generator == "continued":
            gen.set_state(saved["generator"])
            if device.type == "cuda" and saved.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(saved["cuda_rng"], device)
        else:
            # a generator's state does not carry across device types (a CUDA generator's is a
            # Philox counter, a CPU one's a Mersenne twister): the model's noise restarts from a
            # seed of its own, and the record's wall.segments says so
            gen.manual_seed(resume_seed(seed, saved["epoch"] + 1))
            print(f"warning: {checkpoint} was written on {segments[-1]['device']}; resuming on "
                  f"{device.type} with the model's noise generator reseeded (the result will "
                  f"not equal an uninterrupted run's)", file=sys.stderr, flush=True)
        best_key, best_epoch = saved["best_key"], saved["best_epoch"]
        best_state = saved["best_state"]
        best_val, best_test = _eval_from_saved(saved["best_val"]), _eval_from_saved(saved["best_test"])
        pub = None if saved["pub"] is None else (saved["pub"][0], _eval_from_saved(saved["pub"][1]))
        bad_evals, log = saved["bad_evals"], saved["log"]
        t_train, t_eval, first_epoch_s = saved["t_train"], saved["t_eval"], saved["first_epoch_s"]
        own_stop = saved.get("own_stop")
        for sel in selectors:
            sel.load(saved["variants"][sel.variant.name])
        epoch = saved["epoch"]
        first = epoch + 1
        if log_evals:
            print(f"{desc}: resumed after epoch {saved['epoch']} from {checkpoint}",
                  file=sys.stderr, flush=True)
    # where each stretch of epochs ran: one entry per process that trained this run, with its
    # thread count, CPU kernels and commit (a stretch trained with other threads, on another
    # instruction set -- torch's AVX2 and AVX512 kernels sum in other orders -- or with other
    # code computes other roundings: the run then equals no uninterrupted one)
    here = {"device": device.type, "torch": str(torch.__version__), "first_epoch": first,
            "last_epoch": first - 1, "generator": generator,
            "threads": torch.get_num_threads(), "cpu": torch.backends.cpu.get_cpu_capability(),
            "commit": store.git_state()["commit"]}
    for key, what in (("threads", "{} torch threads"), ("cpu", "the CPU kernels {}")):
        if segments and segments[-1].get(key) not in (None, here[key]):
            print(f"warning: {checkpoint} was written by a process with "
                  f"{what.format(segments[-1][key])}; resuming with {here[key]} (other "
                  f"roundings: the result will not equal an uninterrupted run's)",
                  file=sys.stderr, flush=True)
    if device.type == "cuda":
        here["gpu"] = torch.cuda.get_device_name(device)
    segments.append(here)
    model.train()
    def all_stopped() -> bool:
        return own_stop is not None and all(sel.stop_epoch is not None for sel in selectors)

    finished = all_stopped() or first >= config.max_epochs
    bar = tqdm(range(first, config.max_epochs if not finished else first), desc=desc,
               disable=not progress, leave=False)
    line = ""
    for epoch in bar:
        model.set_epoch(epoch)
        t0 = time.perf_counter()
        perm = torch.from_numpy(rng.permutation(n_rows)).to(device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n_rows, bs):
            loss_sum += train_step(model, opt, history, length, target, perm[start:start + bs],
                                   splits.n_items, gen)
        mean_loss = float(loss_sum) / n_rows
        epoch_s = time.perf_counter() - t0
        t_train += epoch_s
        if epoch == 0:
            first_epoch_s = epoch_s
        if not np.isfinite(mean_loss):
            raise TrainingDiverged(f"training loss became {mean_loss} in epoch {epoch}")
        entry: dict[str, Any] = {"epoch": epoch, "loss": mean_loss}
        last = epoch == config.max_epochs - 1
        # no evaluation during a model's warm-up epochs (unless the run ends in them)
        due = ((epoch + 1) % config.eval_every == 0 and epoch >= model.warmup_epochs) or last
        if due and own_stop is None:
            t0 = time.perf_counter()
            val = run_eval("val", epoch)
            entry["val"] = val.metrics
            test = None
            if published:
                test = run_eval("test", epoch)
                entry["test"] = test.metrics
                if pub is None or _key(test.metrics) > _key(pub[1].metrics):
                    pub = (epoch, test)
            t_eval += time.perf_counter() - t0
            if best_key is None or _key(val.metrics) > best_key:
                best_key, best_epoch, best_val, best_test = _key(val.metrics), epoch, val, test
                best_state = copy.deepcopy(model.state_dict())
                bad_evals = 0
            else:
                bad_evals += 1
            if bad_evals >= config.patience:
                own_stop = epoch
            bar.set_postfix(loss=f"{mean_loss:.4f}", val_ndcg20=f"{val.metrics['ndcg@20']:.4f}",
                            best=best_epoch)
            if log_evals:  # printed once the checkpoint is written: a logged epoch is saved
                extra = f" test NDCG@20 {entry['test']['ndcg@20']:.4f}" if published else ""
                line = (f"{desc} epoch {epoch}: loss {mean_loss:.4f} val NDCG@20 "
                        f"{val.metrics['ndcg@20']:.4f}{extra} (best epoch {best_epoch}, "
                        f"{t_train + t_eval:.0f} s)")
        if due and selectors:
            t0 = time.perf_counter()
            entry["variants"] = {}
            for sel in selectors:
                if sel.stop_epoch is None:
                    ev = run_eval("val", epoch, sel.variant.score_fn(model))
                    sel.update(epoch, ev, model, config.patience)
                    entry["variants"][sel.variant.name] = ev.metrics
            t_eval += time.perf_counter() - t0
        log.append(entry)
        here["last_epoch"] = epoch
        if checkpoint is not None and ("val" in entry or "variants" in entry):
            _save_checkpoint(checkpoint, {
                "key": checkpoint_key, "epoch": epoch, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "numpy_rng": rng.bit_generator.state,
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "best_key": best_key, "best_epoch": best_epoch, "best_state": best_state,
                "best_val": _eval_to_saved(best_val), "best_test": _eval_to_saved(best_test),
                "pub": None if pub is None else (pub[0], _eval_to_saved(pub[1])),
                "bad_evals": bad_evals, "log": log, "t_train": t_train, "t_eval": t_eval,
                "first_epoch_s": first_epoch_s, "own_stop": own_stop,
                "variants": {sel.variant.name: sel.to_saved() for sel in selectors},
                "segments": segments,
            })
        if line:
            print(line, file=sys.stderr, flush=True)
            line = ""
        if all_stopped():
            break
    bar.close()
    assert best_state is not None and best_val is not None
    last_epoch = epoch
    variant_results: dict[str, VariantResult] = {}
    for sel in selectors:  # each variant: test once, on its own selected state
        assert sel.best_state is not None and sel.best_val is not None
        model.load_state_dict(sel.best_state)
        t0 = time.perf_counter()
        test = run_eval("test", sel.best_epoch, sel.variant.score_fn(model))
        t_eval += time.perf_counter() - t0
        variant_results[sel.variant.name] = VariantResult(
            sel.best_epoch, sel.stop_epoch if sel.stop_epoch is not None else last_epoch,
            sel.best_val, test, sel.curve)
    epoch = own_stop if own_stop is not None else last_epoch
    model.load_state_dict(best_state)
    if best_test is None:  # validation protocol: test once, on the restored state
        t0 = time.perf_counter()
        best_test = run_eval("test", best_epoch)
        t_eval += time.perf_counter() - t0
    # (in published mode that pass already ran at best_epoch: same state, same generator)
    return TrainResult(
        epochs_run=epoch + 1, best_epoch=best_epoch, val=best_val, test=best_test, published=pub,
        history=log,
        wall={"train_s": t_train, "eval_s": t_eval,
              "train_s_per_epoch_after_first": (t_train - first_epoch_s) / max(epoch, 1),
              "resumed": saved is not None, "segments": segments},
        variants=variant_results,
    )
