"""
Training configuration: our YAML files and the release's `large_recep.yml` / `small_recep.yml`, read
unchanged, validated, overridden from the command line and written into the run folder.
"""

import copy
import io
import re

import blobfile as bf
import yaml

from .gaussian_diffusion import MASK_MODES, SCHEDULES, GaussianDiffusion, Parameterization
from .masks import check_channels, num_defect_from_channels
from .patch_unet import PatchUNetModel
from .unet import UNetModel


class ConfigError(ValueError):
    """A configuration problem a user must fix; the message names the file and the key."""


# The release's `target` strings, and our short names, mapped to the classes they build.
MODEL_TARGETS = {
    "large": UNetModel,
    "small": PatchUNetModel,
    "models.unet.openaiunet.UNetModel": UNetModel,
    "models.unet.unet_receptive.UNetModel": PatchUNetModel,
    "defect_gen.unet.UNetModel": UNetModel,
    "defect_gen.patch_unet.PatchUNetModel": PatchUNetModel,
}
DIFFUSION_TARGETS = (
    "diffusion.base_diffusion.ColdDiffusion",
    "diffusion.base_diffusion.GaussianDiffusion",
    "defect_gen.gaussian_diffusion.GaussianDiffusion",
)
MODEL_PARAMS = {
    "image_size", "in_channels", "model_channels", "out_channels", "num_res_blocks",
    "attention_downsample", "attention_resolutions", "dropout", "channel_mult", "conv_resample",
    "dims", "num_classes", "use_checkpoint", "num_heads", "num_head_channels", "num_heads_upsample",
    "use_scale_shift_norm", "resblock_updown", "use_new_attention_order", "attention_backend",
}  # fmt: skip
REQUIRED_MODEL_PARAMS = (
    "image_size",
    "in_channels",
    "model_channels",
    "out_channels",
    "num_res_blocks",
)

# Every accepted key with its default. `None` under model.params means "the class's default".
DEFAULTS = {
    "diffusion": {
        "target": "diffusion.base_diffusion.ColdDiffusion",
        "params": {
            "parameterization": "x0",
            "schedule": "cosine",
            "num_timestep": 1000,
            "mask_mode": "faithful",  # faithful (the release's sampler) | consistent (see GaussianDiffusion)
        },
    },
    "model": {"target": None, "params": {}, "ckpt": None},
    "data": {
        "bs_per_gpu": 2,
        "num_workers": 1,
        "params": {
            "dir": None,
            "resolution": 256,
            "num_image_train": 5,
            "num_defect": None,  # default: model in_channels - 4
            "classes": None,  # MVTec layout: type names in class order; default sorted names
            "keep_aspect": False,
            "random_flip": False,
            "crop": None,  # train on crops of this side (px) centred near a defect pixel; None: off
            "crop_random": None,  # with crop: probability of a uniform random crop instead (default 0.25)
            "num_good": 0,  # add the first N good images (all-background masks) to the training set
        },
    },
    "optimizer": {
        "params": {"lr": 1e-4, "weight_decay": 0.002, "betas": [0.9, 0.999], "fused": None}
    },
    "train": {
        "iterations": 160000,
        "log_image_interval": 10000,
        "save_ckpt_interval": 10000,
        "max_images": 8,
        "eval_interval": 10,  # the release's key; it never used it, we log every `log_interval`
        "log_interval": 10,
        "ema_rate": 0.9999,
        "ema_warmup": False,  # effective rate min(ema_rate, (1 + step) / (10 + step)); see train_util
        "grad_clip": None,  # max global grad norm; None: no clipping, as the release
        "precision": "fp32",  # fp32 | bf16 | fp16 (autocast)
        "channels_last": False,
        "compile": False,
        "seed": 0,
        "seperate_channel_loss": False,
        "mask_loss_weight": 0.2,
        "mask_class_weight_power": 0.0,  # > 0: weight the mask loss per class; see mask_class_weights
        "mask_class_weight_cap": None,  # the largest class weight (default 10 when the power is > 0)
        "preview_respacing": "50",
        "keep_checkpoints": None,  # keep the newest N checkpoint files; None keeps all
    },
}
PRECISIONS = ("fp32", "bf16", "fp16")
FLOAT_KEYS = (
    "lr", "weight_decay", "ema_rate", "mask_loss_weight", "grad_clip", "mask_class_weight_cap",
    "crop_random",
)  # fmt: skip


def _merge(defaults, given, path, source):
    """Give `defaults` updated with `given`, refusing keys that `defaults` does not have."""
    out = copy.deepcopy(defaults)
    if given is None:
        return out
    if not isinstance(given, dict):
        raise ConfigError(f"{source}: '{path}' must be a mapping, got {given!r}")
    for key, value in given.items():
        where = f"{path}.{key}" if path else key
        if path == "model.params":
            if key not in MODEL_PARAMS:
                raise ConfigError(
                    f"{source}: unknown key '{where}'; allowed: {', '.join(sorted(MODEL_PARAMS))}"
                )
            out[key] = value
            continue
        if key not in defaults:
            raise ConfigError(f"{source}: unknown key '{where}'; allowed: {', '.join(defaults)}")
        if isinstance(defaults[key], dict):
            out[key] = _merge(defaults[key], value, where, source)
        elif isinstance(defaults[key], float) or key in FLOAT_KEYS:
            out[key] = _scalar(value)
        else:
            out[key] = value
    return out


def parse_overrides(pairs, source="command line"):
    """Give [(dotted key, value)] from `section.key=value` strings; values parse as YAML scalars."""
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{source}: override '{pair}' is not of the form section.key=value")
        key, value = pair.split("=", 1)
        out.append((key.strip(), _scalar(yaml.safe_load(value)) if value != "" else None))
    return out


_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _scalar(value):
    """Give `value` with `1e-4`-style strings as floats: YAML 1.1 reads them (no dot) as strings."""
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
        return float(value)
    return value


def apply_overrides(raw, overrides, source="command line"):
    """Set dotted keys in the raw (unvalidated) config mapping."""
    raw = copy.deepcopy(raw)
    for key, value in overrides:
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: cannot set '{key}': '{part}' is not a section")
        node[parts[-1]] = value
    return raw


def read_yaml(path):
    """Give the mapping in a YAML file; a missing or malformed file is a ConfigError naming it."""
    if not bf.exists(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        with bf.BlobFile(path, "r") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def resolve(raw, source, *, num_defect=None):
    """
    Give the full, validated config from a raw mapping.

    :param num_defect: the command line's --num_defect, which wins over the file's data.params.num_defect.
    """
    cfg = _merge(DEFAULTS, raw, "", source)
    if num_defect is not None:
        cfg["data"]["params"]["num_defect"] = int(num_defect)
    validate(cfg, source)
    return cfg


def load_config(path, overrides=(), *, num_defect=None):
    """Give the validated config of a YAML file with `section.key=value` overrides applied."""
    raw = apply_overrides(read_yaml(path), parse_overrides(overrides))
    return resolve(raw, path, num_defect=num_defect)


def model_class(cfg, source="config"):
    """Give the model class the config's `model.target` names."""
    target = cfg["model"]["target"]
    if target not in MODEL_TARGETS:
        raise ConfigError(
            f"{source}: model.target {target!r} is not one of: {', '.join(MODEL_TARGETS)}"
        )
    return MODEL_TARGETS[target]


def validate(cfg, source="config"):
    """Raise ConfigError (naming `source`) for an inconsistent config; fill num_defect when missing."""
    model_class(cfg, source)
    params = cfg["model"]["params"]
    for key in REQUIRED_MODEL_PARAMS:
        if params.get(key) is None:
            raise ConfigError(f"{source}: model.params.{key} is required")
    if params["in_channels"] != params["out_channels"]:
        raise ConfigError(
            f"{source}: model in_channels ({params['in_channels']}) and out_channels "
            f"({params['out_channels']}) must be equal: the model denoises image + mask channels"
        )
    data = cfg["data"]["params"]
    if data["num_defect"] is None:
        try:
            data["num_defect"] = num_defect_from_channels(params["in_channels"])
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    try:
        check_channels(params["in_channels"], data["num_defect"], what="model.params")
    except ValueError as exc:
        raise ConfigError(
            f"{source}: {exc}; set model.params.in_channels/out_channels accordingly"
        ) from None
    diff = cfg["diffusion"]
    if diff["target"] not in DIFFUSION_TARGETS:
        raise ConfigError(
            f"{source}: diffusion.target {diff['target']!r} is not one of {DIFFUSION_TARGETS}"
        )
    dparams = diff["params"]
    if dparams.get("schedule") not in SCHEDULES:
        raise ConfigError(f"{source}: diffusion.params.schedule must be one of {SCHEDULES}")
    if dparams.get("parameterization") not in [p.value for p in Parameterization]:
        raise ConfigError(f"{source}: diffusion.params.parameterization must be x0 or eps")
    if dparams.get("mask_mode") not in MASK_MODES:
        raise ConfigError(f"{source}: diffusion.params.mask_mode must be one of {MASK_MODES}")
    train = cfg["train"]
    if train["precision"] not in PRECISIONS:
        raise ConfigError(f"{source}: train.precision must be one of {PRECISIONS}")
    if train["seperate_channel_loss"] and dparams["parameterization"] != "x0":
        raise ConfigError(
            f"{source}: train.seperate_channel_loss needs diffusion parameterization x0"
        )
    for key in (
        "iterations",
        "log_image_interval",
        "save_ckpt_interval",
        "log_interval",
        "max_images",
    ):
        least = 0 if key in ("iterations", "max_images") else 1  # max_images 0: no previews
        if not isinstance(train[key], int) or train[key] < least:
            kind = "non-negative" if least == 0 else "positive"
            raise ConfigError(f"{source}: train.{key} must be a {kind} integer")
    if not 0 <= float(train["ema_rate"]) < 1:
        raise ConfigError(f"{source}: train.ema_rate must lie in [0, 1)")
    res = data["resolution"]
    ds = 2 ** (len(params.get("channel_mult") or (1, 2, 4)) - 1)
    if not isinstance(res, int) or res % ds:
        raise ConfigError(f"{source}: data.params.resolution {res} must be a multiple of {ds}")
    if not isinstance(cfg["data"]["bs_per_gpu"], int) or cfg["data"]["bs_per_gpu"] < 1:
        raise ConfigError(f"{source}: data.bs_per_gpu must be a positive integer")
    _validate_recipe_options(cfg, source)
    return cfg


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_recipe_options(cfg, source):
    """Check the EMA warm-up, class-weight, crop and good-image keys."""
    train, data = cfg["train"], cfg["data"]["params"]
    if not isinstance(train["ema_warmup"], bool):
        raise ConfigError(f"{source}: train.ema_warmup must be true or false")
    power, cap = train["mask_class_weight_power"], train["mask_class_weight_cap"]
    if not _is_number(power) or power < 0:
        raise ConfigError(f"{source}: train.mask_class_weight_power must be a number >= 0")
    if cap is not None:
        if not power:
            raise ConfigError(
                f"{source}: train.mask_class_weight_cap is set but train.mask_class_weight_power is "
                "0 (class weights off): set a power > 0 or remove the cap"
            )
        if not _is_number(cap) or cap < 1:
            raise ConfigError(f"{source}: train.mask_class_weight_cap must be a number >= 1")
    crop, res = data["crop"], data["resolution"]
    if crop is not None:
        ds = 2 ** (len(cfg["model"]["params"].get("channel_mult") or (1, 2, 4)) - 1)
        if not isinstance(crop, int) or isinstance(crop, bool) or not 1 <= crop <= res:
            raise ConfigError(
                f"{source}: data.params.crop must be an integer in 1..{res} "
                f"(data.params.resolution), got {crop!r}"
            )
        if crop % ds:
            raise ConfigError(f"{source}: data.params.crop {crop} must be a multiple of {ds}")
    if data["crop_random"] is not None:
        if crop is None:
            raise ConfigError(
                f"{source}: data.params.crop_random is set but data.params.crop is not (crops off)"
            )
        if not _is_number(data["crop_random"]) or not 0 <= data["crop_random"] <= 1:
            raise ConfigError(f"{source}: data.params.crop_random must lie in [0, 1]")
    num_good = data["num_good"]
    if not isinstance(num_good, int) or isinstance(num_good, bool) or num_good < 0:
        raise ConfigError(f"{source}: data.params.num_good must be a non-negative integer")


def build_model(cfg):
    """Give the model a config describes (random weights)."""
    params = {k: v for k, v in cfg["model"]["params"].items() if v is not None}
    return model_class(cfg)(**params)


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


def dump(cfg):
    """Give the config as YAML text."""
    buf = io.StringIO()
    yaml.safe_dump(cfg, buf, sort_keys=False)
    return buf.getvalue()
