"""
The model and the diffusion a resolved config describes (see :mod:`defect_gen.training.config`).
"""

from ..errors import ConfigError
from ..gaussian_diffusion import GaussianDiffusion
from ..unet import UNetModel
from .config import model_class


def build_model(cfg, source="config"):
    """Give the model a config describes (random weights); ConfigError when its params cannot make one."""
    params = {k: v for k, v in cfg["model"]["params"].items() if v is not None}
    try:
        return model_class(cfg)(**params)
    except (ValueError, TypeError, AssertionError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{source}: model.params do not make a model ({reason})") from None


def build_diffusion(cfg):
    """Give the GaussianDiffusion a config describes, with its loss options."""
    return GaussianDiffusion(
        **cfg["diffusion"]["params"],
        seperate_channel_loss=cfg["train"]["seperate_channel_loss"],
        mask_loss_weight=cfg["train"]["mask_loss_weight"],
    )


def model_kind(cfg):
    """Give "large" or "small"."""
    return "large" if model_class(cfg) is UNetModel else "small"
