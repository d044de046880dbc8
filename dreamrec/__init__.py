"""DreamRec: guided diffusion that generates an oracle item embedding (Yang et al., NeurIPS 2023)."""

from dreamrec.model import DreamRec, DreamRecConfig
from dreamrec.schedule import DiffusionSchedule, make_betas

__all__ = ["DreamRec", "DreamRecConfig", "DiffusionSchedule", "make_betas"]
