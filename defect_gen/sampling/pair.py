"""
A large and a small model loaded for sampling, and the checks that they fit one sampling loop.

:func:`load_model` builds the model that a checkpoint's config describes (or, for the release's
checkpoints, the given YAML) and loads its EMA or raw weights with ``strict=True``; :func:`load_pair`
loads both and :func:`check_compatible` refuses a pair that disagrees on channels, classes or diffusion.
Without a large checkpoint the pair holds the small model alone (``large=None``), which takes every
step: enough to inpaint on a canvas larger than the models', where the large model is skipped anyway.
Which file a path means is :mod:`defect_gen.training.checkpoints`' to say, reading it :mod:`defect_gen.fileio`'s.
"""

import logging
from dataclasses import dataclass
from typing import Optional

import blobfile as bf
import torch

from ..errors import CheckpointError, ConfigError, first_line
from ..masks import DEFAULT_CLASS_WEIGHT_CORRECTION, MaskPriorCorrection, num_channels
from ..training.checkpoints import read_model_checkpoint, resolve_checkpoint
from ..training.config import read_yaml, resolve
from ..training.factory import build_diffusion, build_model, model_kind

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for sampling, with what its checkpoint says about it."""

    path: str
    kind: str  # "large" or "small"
    model: torch.nn.Module
    cfg: dict  # the resolved config (from the checkpoint, or from the YAML for release checkpoints)
    config_source: str  # where cfg came from
    step: Optional[int]
    classes: Optional[list]
    data_stats: Optional[dict]
    weights: str  # "ema" or "model"
    num_bytes: Optional[int]
    prior_correction: Optional[list] = (
        None  # the class weights whose bias the model's output undoes
    )

    @property
    def channels(self):
        """The model's in/out channel count (num_defect + 4)."""
        return self.cfg["model"]["params"]["in_channels"]

    @property
    def num_defect(self):
        """The number of defect classes K."""
        return self.cfg["data"]["params"]["num_defect"]

    @property
    def resolution(self):
        """The side in pixels of the training images."""
        return self.cfg["data"]["params"]["resolution"]

    @property
    def diffusion_params(self):
        """The config's diffusion.params: schedule, parameterization, num_timestep."""
        return self.cfg["diffusion"]["params"]


def _state_dict_mismatch(model, state):
    """Give a short description of how `state` differs from `model`'s state_dict, or "" if it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and torch.is_tensor(state[k]) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[0]} (checkpoint vs model)")
    return "; ".join(parts)


def load_model(
    path,
    kind,
    *,
    config_path=None,
    use_ema=True,
    class_weight_correction=DEFAULT_CLASS_WEIGHT_CORRECTION,
    device="cpu",
):
    """
    Give a LoadedModel: the checkpoint's EMA (or raw) weights in the model its config describes, in eval mode.

    Our checkpoints carry their config; the release's (`{model, ema, optimizer}` only) need `config_path`,
    its YAML. Weights load with ``strict=True``.

    :param class_weight_correction: a share in [0, 1]. A model trained with a class-weighted
        cross-entropy mask loss (``train.mask_class_weight_power`` > 0) in the consistent mask mode
        comes wrapped in :class:`~defect_gen.masks.MaskPriorCorrection` with this strength, so that its
        masks are not inflated by the weights (1: the full logit adjustment; 0: the output as trained).

    :param path: a checkpoint file, a `checkpoints/latest` pointer or a run folder.
    :param kind: "large" or "small": what the caller uses the model as; another kind is an error.
    :raises CheckpointError, ConfigError: naming the file and the problem.
    """
    path = resolve_checkpoint(path)
    flag = f"--{kind}_recep"
    ckpt = read_model_checkpoint(path)
    if ckpt.get("config") is not None:
        cfg = resolve(ckpt["config"], path)
        source = path
        if config_path is not None:
            given = resolve(read_yaml(config_path), str(config_path))
            if given["model"] != cfg["model"]:
                logger.warning(
                    "%s carries its own config; %s describes another model and is ignored",
                    path, config_path,
                )  # fmt: skip
    elif config_path is None:
        raise CheckpointError(
            f"{path}: the checkpoint holds no config (the release's format): pass its YAML with "
            f"{flag}_config"
        )
    else:
        cfg = resolve(read_yaml(config_path), str(config_path))
        source = str(config_path)

    actual = model_kind(cfg)
    if actual != kind:
        raise CheckpointError(
            f"{path}: holds a {actual} model ({cfg['model']['target']}, per {source}) but was given "
            f"as {flag}; pass it as --{actual}_recep"
        )
    key = "ema" if use_ema else "model"
    state = ckpt.get(key)
    if not isinstance(state, dict):
        hint = "; pass --use_ema false to use the raw weights" if use_ema else ""
        raise CheckpointError(f"{path}: holds no '{key}' weights{hint}")
    model = build_model(cfg)
    problem = _state_dict_mismatch(model, state)
    if problem:
        raise CheckpointError(
            f"{path}: its '{key}' weights do not fit the model of {source}: {problem}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: cannot load its '{key}' weights ({first_line(exc)})"
        ) from None
    correction = _prior_correction(ckpt, cfg, path, class_weight_correction)
    if correction is not None:
        model = MaskPriorCorrection(model, correction, class_weight_correction)
    model.to(device).eval().requires_grad_(False)
    try:
        num_bytes = int(bf.stat(path).size)
    except (OSError, AttributeError):
        num_bytes = None
    step = ckpt.get("step")
    return LoadedModel(
        path=path, kind=kind, model=model, cfg=cfg, config_source=source,
        step=int(step) if step is not None else None, classes=ckpt.get("classes"),
        data_stats=ckpt.get("data_stats"), weights=key, num_bytes=num_bytes,
        prior_correction=correction,
    )  # fmt: skip


def _prior_correction(ckpt, cfg, path, strength):
    """Give the class weights whose bias to undo for a checkpoint (None: nothing to undo)."""
    if not 0 <= strength <= 1:
        raise ConfigError(f"--class_weight_correction must lie in [0, 1], got {strength}")
    weights = ckpt.get("mask_class_weights")
    if strength == 0 or not weights or all(w == 1 for w in weights):
        return None
    if not build_diffusion(cfg).mask_logits:
        # Without cross-entropy logits there is no calibrated prior to restore: sample as trained.
        logger.warning(
            "%s: trained with class weights but its mask outputs are not cross-entropy logits read "
            "in the consistent mask mode; sampling without --class_weight_correction",
            path,
        )
        return None
    weights = [float(w) for w in weights]
    logger.info(
        "%s: trained with class weights %s; its mask logits are corrected by -%g x log(weight) "
        "(--class_weight_correction 0 samples as trained)", path, weights, strength,
    )  # fmt: skip
    return weights


@dataclass
class ModelPair:
    """
    A large and a small model that fit together, with their common settings; `large` is None when
    the small model takes every step alone.
    """

    large: Optional[LoadedModel]
    small: LoadedModel
    diffusion: object  # GaussianDiffusion
    num_defect: int
    resolution: int
    classes: list

    @property
    def models(self):
        """The loaded models, the large one first (when there is one)."""
        return (self.small,) if self.large is None else (self.large, self.small)

    @property
    def reference(self):
        """The model whose config describes the pair (data, diffusion): the large one, else the small."""
        return self.models[0]

    @property
    def channels(self):
        """The in/out channel count both models share."""
        return self.reference.channels

    @property
    def num_timesteps(self):
        """T, the number of diffusion steps."""
        return self.diffusion.num_timesteps


def check_compatible(large, small, *, num_defect=None):
    """
    Raise unless the two models can share one sampling loop (and fit `num_defect` when given).

    They must agree on channels, num_defect, class names (when both checkpoints name them) and the
    diffusion's schedule, parameterization and number of timesteps. `large` None: the small model
    alone, checked against `num_defect` only.
    """
    if large is not None:
        _check_pair(large, small)
    model = large or small
    if num_defect is not None:
        if num_defect < 1:
            raise ConfigError(f"--num_defect must be at least 1, got {num_defect}")
        need = num_channels(num_defect)
        if need != model.channels:
            held = f"{small.path} has" if large is None else f"{large.path} and {small.path} have"
            raise ConfigError(
                f"--num_defect {num_defect} needs {need} in/out channels (3 RGB + 1 background + "
                f"{num_defect} defect), but {held} {model.channels} (num_defect {model.num_defect})"
            )
    if model.num_defect + 1 > 256:
        raise ConfigError(f"{model.path}: {model.num_defect} defect classes do not fit 8-bit masks")


def _check_pair(large, small):
    """Raise CheckpointError naming both files when the two models disagree (see check_compatible)."""
    diffs = []
    pairs = [
        ("in/out channels", large.channels, small.channels),
        ("num_defect", large.num_defect, small.num_defect),
    ]
    for key in ("schedule", "parameterization", "num_timestep", "mask_mode"):
        pairs.append((f"diffusion {key}", large.diffusion_params[key], small.diffusion_params[key]))
    if large.diffusion_params["mask_mode"] == "consistent":  # logits or x0 mask outputs: must agree
        loss = [m.cfg["train"]["seperate_channel_loss"] for m in (large, small)]
        pairs.append(("train.seperate_channel_loss", *loss))
    if large.classes and small.classes:
        pairs.append(("classes", list(large.classes), list(small.classes)))
    for name, a, b in pairs:
        if a != b:
            diffs.append(f"{name} {a} vs {b}")
    if diffs:
        raise CheckpointError(
            f"{large.path} (large) and {small.path} (small) do not fit together: {'; '.join(diffs)}"
        )


def load_pair(
    large_path, small_path, *, large_config=None, small_config=None, use_ema=True, num_defect=None,
    class_weight_correction=DEFAULT_CLASS_WEIGHT_CORRECTION, device="cpu",
):  # fmt: skip
    """
    Give the ModelPair of two checkpoints after checking that they fit together; `large_path` None
    gives the small model alone, whose training resolution is then the pair's.
    """
    options = dict(use_ema=use_ema, class_weight_correction=class_weight_correction, device=device)
    large = None
    if large_path is not None:
        large = load_model(large_path, "large", config_path=large_config, **options)
    small = load_model(small_path, "small", config_path=small_config, **options)
    check_compatible(large, small, num_defect=num_defect)
    if large is not None and small.resolution != large.resolution:
        logger.warning(
            "the small model was trained at %d px, the large one at %d px: joint and mask samples "
            "are drawn at %d px; inpainted pairs at their good images' size (or --size)",
            small.resolution, large.resolution, large.resolution,
        )  # fmt: skip
    model = large or small
    k = model.num_defect
    classes = list(model.classes or small.classes or [])
    if len(classes) != k:
        classes = [f"class_{i}" for i in range(1, k + 1)]
    return ModelPair(
        large=large, small=small, diffusion=build_diffusion(model.cfg), num_defect=k,
        resolution=model.resolution, classes=classes,
    )  # fmt: skip
