"""Per-dataset DreamRec settings.

yc, ks and zhihu are the official README's (github.com/YangZhengyi98/DreamRec): AdamW, batch 256,
hidden 64, dropout 0.1, mlp1 denoiser. ml-100k has no published setting: T=500 and w=2 are
yc's, and lr and schedule were chosen on validation only by
``python -m harness.tune --model dreamrec --dataset ml-100k --grid lr=1e-2,1e-3,1e-4,5e-5
--grid schedule=exp,linear --seeds 1`` (``results/tuning/ml-100k-dreamrec.md``).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "yc": {"model": {"timesteps": 500, "schedule": "exp", "w": 2.0}, "train": {"lr": 1e-3}},
    "ks": {"model": {"timesteps": 2000, "schedule": "cosine", "w": 2.0}, "train": {"lr": 5e-5}},
    "zhihu": {"model": {"timesteps": 500, "schedule": "linear", "w": 4.0}, "train": {"lr": 1e-2}},
    "ml-100k": {"model": {"timesteps": 500, "schedule": "exp", "w": 2.0}, "train": {"lr": 5e-5}},
}
