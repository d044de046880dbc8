"""Per-dataset DreamRec settings.

yc, ks and zhihu are the official README's (github.com/YangZhengyi98/DreamRec): AdamW, batch 256,
hidden 64, dropout 0.1, mlp1 denoiser. ml-100k has no published setting: it borrows yc's,
untuned (tuning it on test would be the mistake this harness exists to prevent).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "yc": {"model": {"timesteps": 500, "schedule": "exp", "w": 2.0}, "train": {"lr": 1e-3}},
    "ks": {"model": {"timesteps": 2000, "schedule": "cosine", "w": 2.0}, "train": {"lr": 5e-5}},
    "zhihu": {"model": {"timesteps": 500, "schedule": "linear", "w": 4.0}, "train": {"lr": 1e-2}},
    "ml-100k": {"model": {"timesteps": 500, "schedule": "exp", "w": 2.0}, "train": {"lr": 1e-3}},
}
