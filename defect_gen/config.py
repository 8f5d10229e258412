"""
Training configuration: our YAML files and the release's `large_recep.yml` / `small_recep.yml`, read
unchanged, validated, overridden from the command line and written into the run folder.
"""

import copy
import inspect
import io
import re

import blobfile as bf
import yaml

from .gaussian_diffusion import SCHEDULES, GaussianDiffusion, Parameterization
from .masks import check_channels, num_channels, num_defect_from_channels
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
# model.params may hold any keyword of the model class's constructor (see `model_params`); these are
# required, except the channels, which may be omitted or `auto` (then num_defect + 4).
REQUIRED_MODEL_PARAMS = ("image_size", "model_channels", "num_res_blocks")
CHANNEL_KEYS = ("in_channels", "out_channels")
AUTO = "auto"

# Every accepted key with its default. `None` under model.params means "the class's default".
DEFAULTS = {
    "diffusion": {
        "target": "diffusion.base_diffusion.ColdDiffusion",
        "params": {"parameterization": "x0", "schedule": "cosine", "num_timestep": 1000},
    },
    "model": {"target": None, "params": {}, "ckpt": None},
    "data": {
        "bs_per_gpu": 2,
        "num_workers": 1,
        "params": {
            "dir": None,
            "resolution": 256,
            "num_image_train": 5,
            "num_defect": None,  # default: in_channels - 4, or the classes the dataset shows
            "classes": None,  # MVTec layout: type names in class order; default sorted names
            "keep_aspect": False,
            "random_flip": False,
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
        "eval_interval": 10,  # the release's key, accepted and ignored: we log every `log_interval`
        "log_interval": 10,
        "ema_rate": 0.9999,
        "grad_clip": None,  # max global grad norm; None: no clipping, as the release
        "precision": "fp32",  # fp32 | bf16 | fp16 (autocast)
        "channels_last": False,
        "compile": False,
        "seed": 0,
        "seperate_channel_loss": False,
        "mask_loss_weight": 0.2,
        "preview_respacing": "50",
        "keep_checkpoints": None,  # keep the newest N checkpoint files; None keeps all
    },
}
PRECISIONS = ("fp32", "bf16", "fp16")
FLOAT_KEYS = ("lr", "weight_decay", "ema_rate", "mask_loss_weight", "grad_clip")


def _merge(defaults, given, path, source):
    """Give `defaults` updated with `given`, refusing keys that `defaults` does not have."""
    out = copy.deepcopy(defaults)
    if given is None:
        return out
    if not isinstance(given, dict):
        raise ConfigError(f"{source}: '{path}' must be a mapping, got {given!r}")
    for key, value in given.items():
        where = f"{path}.{key}" if path else key
        if path == "model.params":  # checked against the model class in validate()
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


def resolve(raw, source, *, num_defect=None, need_num_defect=True):
    """
    Give the full, validated config from a raw mapping.

    :param num_defect: the command line's --num_defect, which wins over the file's data.params.num_defect.
    :param need_num_defect: False lets num_defect stay unknown (None) when the channels are `auto`; they
        stay `auto` then, and the caller resolves again once the dataset has told the number of classes.
    """
    cfg = _merge(DEFAULTS, raw, "", source)
    if num_defect is not None:
        cfg["data"]["params"]["num_defect"] = int(num_defect)
    validate(cfg, source, need_num_defect=need_num_defect)
    return cfg


def load_config(path, overrides=(), *, num_defect=None, need_num_defect=True):
    """Give the validated config of a YAML file with `section.key=value` overrides applied."""
    raw = apply_overrides(read_yaml(path), parse_overrides(overrides))
    return resolve(raw, path, num_defect=num_defect, need_num_defect=need_num_defect)


def model_class(cfg, source="config"):
    """Give the model class the config's `model.target` names."""
    target = cfg["model"]["target"]
    if target not in MODEL_TARGETS:
        raise ConfigError(
            f"{source}: model.target {target!r} is not one of: {', '.join(MODEL_TARGETS)}"
        )
    return MODEL_TARGETS[target]


def model_params(cls):
    """Give {name: default} of the keywords a model class's constructor takes (no default: required)."""
    return {
        name: (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _check_model_params(cfg, source):
    """Refuse model.params keys the model class does not take, and values it cannot use."""
    cls = model_class(cfg, source)
    params = cfg["model"]["params"]
    accepted = model_params(cls)
    for key in params:
        if key not in accepted:
            allowed = ", ".join(sorted(accepted))
            raise ConfigError(
                f"{source}: unknown key 'model.params.{key}' for model.target "
                f"{cfg['model']['target']!r} ({cls.__name__}); allowed: {allowed}"
            )
    for key in REQUIRED_MODEL_PARAMS:
        if params.get(key) is None:
            raise ConfigError(f"{source}: model.params.{key} is required")
    if params.get("num_classes") is not None:
        raise ConfigError(
            f"{source}: model.params.num_classes must be null: class-conditional models are not "
            f"supported (training and sampling pass no labels)"
        )
    return accepted


def _resolve_channels(cfg, source, need_num_defect):
    """
    Fill `auto` (or omitted) in/out channels from num_defect, and num_defect from explicit channels;
    refuse channels that do not fit num_defect. Give False when num_defect stays unknown.
    """
    params, data = cfg["model"]["params"], cfg["data"]["params"]
    explicit = {}
    for key in CHANNEL_KEYS:
        value = params.get(key)
        if value is None or value == AUTO:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                f"{source}: model.params.{key} must be an integer or {AUTO}, got {value!r}"
            )
        explicit[key] = value
    if len(explicit) == 2 and explicit["in_channels"] != explicit["out_channels"]:
        raise ConfigError(
            f"{source}: model in_channels ({params['in_channels']}) and out_channels "
            f"({params['out_channels']}) must be equal: the model denoises image + mask channels"
        )
    if data["num_defect"] is None:
        if not explicit:
            if not need_num_defect:
                for key in CHANNEL_KEYS:
                    params[key] = AUTO
                return False
            raise ConfigError(
                f"{source}: model.params.in_channels/out_channels are {AUTO} (num_defect + 4) but "
                f"num_defect is unknown: set data.params.num_defect or pass --num_defect"
            )
        try:
            data["num_defect"] = num_defect_from_channels(next(iter(explicit.values())))
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    for key in CHANNEL_KEYS:
        if key not in explicit:
            params[key] = num_channels(data["num_defect"])
    try:
        check_channels(params["in_channels"], data["num_defect"], what="model.params")
    except ValueError as exc:
        raise ConfigError(
            f"{source}: {exc}; set model.params.in_channels/out_channels accordingly (or {AUTO})"
        ) from None
    return True


def validate(cfg, source="config", *, need_num_defect=True):
    """
    Raise ConfigError (naming `source`) for an inconsistent config; fill num_defect and `auto` channels.

    :param need_num_defect: see :func:`resolve`.
    """
    accepted = _check_model_params(cfg, source)
    params = cfg["model"]["params"]
    _resolve_channels(cfg, source, need_num_defect)
    data = cfg["data"]["params"]
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
    ds = 2 ** (len(params.get("channel_mult") or accepted["channel_mult"]) - 1)
    if not isinstance(res, int) or res % ds:
        raise ConfigError(f"{source}: data.params.resolution {res} must be a multiple of {ds}")
    if not isinstance(cfg["data"]["bs_per_gpu"], int) or cfg["data"]["bs_per_gpu"] < 1:
        raise ConfigError(f"{source}: data.bs_per_gpu must be a positive integer")
    return cfg


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
