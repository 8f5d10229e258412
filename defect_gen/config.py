"""
Training configuration: our YAML files and the release's `large_recep.yml` / `small_recep.yml`, read
unchanged, validated, overridden from the command line and written into the run folder.
"""

import copy
import inspect
import io
import math
import re

import blobfile as bf
import yaml

from .gaussian_diffusion import MASK_MODES, SCHEDULES, GaussianDiffusion, Parameterization
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
            "num_defect": None,  # default: in_channels - 4, or the classes the dataset shows
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
        "eval_interval": 10,  # the release's key, accepted and ignored: we log every `log_interval`
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
GROUPNORM_GROUPS = 32  # defect_gen.nn.normalization


class Rule:
    """
    The type and range of one config value: `kind` is int, float, bool, str, choice, int_list,
    float_list, str_list or int_or_list; `lo`/`hi` bound numbers (and list items), `open_hi`
    excludes `hi`; `null` allows None; `length` fixes a list's length.
    """

    def __init__(self, kind, lo=None, hi=None, *, open_lo=False, open_hi=False, null=False,
                 choices=None, length=None):  # fmt: skip
        self.kind, self.lo, self.hi, self.open_lo, self.open_hi = kind, lo, hi, open_lo, open_hi
        self.null, self.choices, self.length = null, choices, length

    def _number(self, value, kind):
        if isinstance(value, bool):
            return "a boolean"
        if kind == "int" and not isinstance(value, int):
            return "an integer"
        if kind == "float" and (not isinstance(value, (int, float)) or not math.isfinite(value)):
            return "a finite number"
        if self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo):
            return "too small"
        if self.hi is not None and (value >= self.hi if self.open_hi else value > self.hi):
            return "too large"
        return None

    def problem(self, value):
        """Give what `value` must be (e.g. "an integer >= 1") when it breaks the rule, else None."""
        if value is None:
            return None if self.null else "set (not null)"
        kind = self.kind
        if kind == "int_or_list":
            kind = "int_list" if isinstance(value, (list, tuple)) else "int"
        if kind == "bool":
            return None if isinstance(value, bool) else "true or false"
        if kind == "str":
            return None if isinstance(value, str) else "a string"
        if kind == "str_or_int":
            ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
            return None if ok else "a string"
        if kind == "choice":
            return None if value in self.choices else f"one of {', '.join(map(str, self.choices))}"
        if kind in ("int", "float"):
            wrong = self._number(value, kind)
            return f"{self._what(kind)}" if wrong else None
        item = kind.split("_")[0]
        if not isinstance(value, (list, tuple)) or (self.length and len(value) != self.length):
            size = f" of {self.length}" if self.length else " of"
            return f"a list{size} {self._items(item)}"
        for v in value:
            if isinstance(v, str) if item == "str" else self._number(v, item) is None:
                continue
            return f"a list of {self._items(item)}"
        return None

    def _items(self, item):
        what = self._what(item)
        return (
            what.replace("an integer", "integers")
            .replace("a number", "numbers")
            .replace("a string", "strings")
        )

    def _what(self, kind):
        text = {"int": "an integer", "float": "a number", "str": "a string"}[kind]
        if self.lo is not None and self.hi is not None:
            return f"{text} in {'(' if self.open_lo else '['}{self.lo}, {self.hi}{')' if self.open_hi else ']'}"
        if self.lo is not None:
            return f"{text} {'>' if self.open_lo else '>='} {self.lo}"
        return text

    def describe(self, value):
        """Give "must be ..., got ..." for a value that breaks the rule, else None."""
        wrong = self.problem(value)
        if wrong is None:
            return None
        return f"must be {wrong}{' (or null)' if self.null else ''}, got {value!r}"


# Settings that change what a resumed run trains: a resume with other values is refused unless the
# user allows it (--allow_config_change). Prefixes cover every key below them.
TRAINING_KEYS = (
    "model.target", "model.params", "diffusion", "data.bs_per_gpu", "data.params.dir",
    "data.params.resolution", "data.params.num_image_train", "data.params.num_defect",
    "data.params.classes", "data.params.keep_aspect", "data.params.random_flip", "optimizer",
    "train.ema_rate", "train.grad_clip", "train.precision", "train.seed",
    "train.seperate_channel_loss", "train.mask_loss_weight", "train.ema_warmup",
    "train.mask_class_weight_power", "train.mask_class_weight_cap", "data.params.crop",
    "data.params.crop_random", "data.params.num_good",
)  # fmt: skip
# Of those, the ones a checkpoint's weights cannot follow: refused even with --allow_config_change.
FIXED_ON_RESUME = ("model.target", "model.params", "data.params.num_defect")


def _positive_float(null=False):
    return Rule("float", 0, open_lo=True, null=null)


# The type and range of each value, by dotted key; a key absent here is checked by `validate` only.
RULES = {
    "diffusion.target": Rule("choice", choices=DIFFUSION_TARGETS),
    "diffusion.params.parameterization": Rule(
        "choice", choices=tuple(p.value for p in Parameterization)
    ),
    "diffusion.params.schedule": Rule("choice", choices=SCHEDULES),
    "diffusion.params.num_timestep": Rule("int", 1),
    "diffusion.params.mask_mode": Rule("choice", choices=MASK_MODES),
    "model.ckpt": Rule("str", null=True),
    "model.params.image_size": Rule("int", 1, null=True),
    "model.params.in_channels": Rule("int", 1, null=True),
    "model.params.out_channels": Rule("int", 1, null=True),
    "model.params.model_channels": Rule("int", 1, null=True),
    "model.params.num_res_blocks": Rule("int", 1, null=True),
    "model.params.attention_downsample": Rule("int_list", 1, null=True),
    "model.params.attention_resolutions": Rule("int_or_list", 1, null=True),
    "model.params.dropout": Rule("float", 0, 1, open_hi=True, null=True),
    "model.params.channel_mult": Rule("int_list", 1, null=True),
    "model.params.conv_resample": Rule("bool", null=True),
    "model.params.dims": Rule("choice", choices=(1, 2, 3), null=True),
    "model.params.num_classes": Rule("int", 1, null=True),
    "model.params.use_checkpoint": Rule("bool", null=True),
    "model.params.num_heads": Rule("int", 1, null=True),
    "model.params.num_head_channels": Rule("int", -1, null=True),
    "model.params.num_heads_upsample": Rule("int", -1, null=True),
    "model.params.use_scale_shift_norm": Rule("bool", null=True),
    "model.params.resblock_updown": Rule("bool", null=True),
    "model.params.use_new_attention_order": Rule("bool", null=True),
    "model.params.attention_backend": Rule("choice", choices=("sdpa", "math"), null=True),
    "data.bs_per_gpu": Rule("int", 1),
    "data.num_workers": Rule("int", 0),
    "data.params.dir": Rule("str", null=True),
    "data.params.resolution": Rule("int", 8),
    "data.params.num_image_train": Rule("int", 1, null=True),
    "data.params.num_defect": Rule("int", 1, null=True),
    "data.params.classes": Rule("str_list", null=True),
    "data.params.keep_aspect": Rule("bool"),
    "data.params.random_flip": Rule("bool"),
    "data.params.crop": Rule("int", 1, null=True),
    "data.params.crop_random": Rule("float", 0, 1, null=True),
    "data.params.num_good": Rule("int", 0),
    "optimizer.params.lr": _positive_float(),
    "optimizer.params.weight_decay": Rule("float", 0),
    "optimizer.params.betas": Rule("float_list", 0, 1, open_hi=True, length=2),
    "optimizer.params.fused": Rule("bool", null=True),
    "train.iterations": Rule("int", 1),
    "train.log_image_interval": Rule("int", 1),
    "train.save_ckpt_interval": Rule("int", 1),
    "train.max_images": Rule("int", 0),  # 0: no previews
    "train.eval_interval": Rule("int", 1),
    "train.log_interval": Rule("int", 1),
    "train.ema_rate": Rule("float", 0, 1, open_hi=True),
    "train.grad_clip": _positive_float(null=True),
    "train.precision": Rule("choice", choices=PRECISIONS),
    "train.channels_last": Rule("bool"),
    "train.compile": Rule("bool"),
    "train.seed": Rule("int", 0),
    "train.seperate_channel_loss": Rule("bool"),
    "train.mask_loss_weight": Rule("float", 0),
    "train.ema_warmup": Rule("bool"),
    "train.mask_class_weight_power": Rule("float", 0),
    "train.mask_class_weight_cap": Rule("float", 1, null=True),
    "train.preview_respacing": Rule("str_or_int"),
    "train.keep_checkpoints": Rule("int", 1, null=True),  # null keeps all
}


def _merge(defaults, given, path, source):
    """
    Give `defaults` updated with `given`, refusing keys that `defaults` does not have.

    :param source: the name of where values come from, or a callable dotted key -> that name.
    """
    origin = source if callable(source) else (lambda key: source)
    out = copy.deepcopy(defaults)
    if given is None:
        return out
    if not isinstance(given, dict):
        raise ConfigError(f"{origin(path)}: '{path}' must be a mapping, got {given!r}")
    for key, value in given.items():
        where = f"{path}.{key}" if path else key
        if path == "model.params":  # checked against the model class in validate()
            out[key] = _scalar(value)
            continue
        if key not in defaults:
            raise ConfigError(
                f"{origin(where)}: unknown key '{where}'; allowed: {', '.join(defaults)}"
            )
        if isinstance(defaults[key], dict):
            out[key] = _merge(defaults[key], value, where, origin)
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
    if bf.isdir(path):
        raise ConfigError(f"{path}: is a folder, not a config file")
    try:
        with bf.BlobFile(path, "r") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or (str(exc).splitlines() or ["invalid YAML"])[0]
        raise ConfigError(f"{path}:{line}: not valid YAML ({reason})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


COMMAND_LINE = "command line"


def _origin(source, origins):
    """Give a callable dotted key -> where its value came from: `origins` (prefixes too), or `source`."""
    origins = origins or {}

    def origin(key):
        parts = key.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in origins:
                return origins[".".join(parts[:i])]
        below = [where for k, where in origins.items() if k.startswith(key + ".")]
        return below[0] if below else source

    return origin


def resolve(raw, source, *, num_defect=None, origins=None, need_num_defect=True):
    """
    Give the full, validated config from a raw mapping.

    :param num_defect: the command line's --num_defect, which wins over the file's data.params.num_defect.
    :param origins: {dotted key: where it was set} for values not from `source` (command-line overrides).
    :param need_num_defect: False lets num_defect stay unknown (None) when the channels are `auto`; they
        stay `auto` then, and the caller resolves again once the dataset has told the number of classes.
    """
    origins = dict(origins or {})
    cfg = _merge(DEFAULTS, raw, "", _origin(source, origins))
    if num_defect is not None:
        cfg["data"]["params"]["num_defect"] = int(num_defect)
        origins["data.params.num_defect"] = f"{COMMAND_LINE} (--num_defect)"
    validate(cfg, source, origins=origins, need_num_defect=need_num_defect)
    return cfg


def load_config(path, overrides=(), *, num_defect=None, need_num_defect=True):
    """Give the validated config of a YAML file with `section.key=value` overrides applied."""
    pairs = parse_overrides(overrides)
    raw = apply_overrides(read_yaml(path), pairs)
    origins = {key: COMMAND_LINE for key, _ in pairs}
    return resolve(
        raw, path, num_defect=num_defect, origins=origins, need_num_defect=need_num_defect
    )


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_rules(cfg, source="config", origins=None):
    """Raise ConfigError for the first value that breaks its RULES entry, naming key and origin."""
    origin = _origin(source, origins)
    for key, rule in RULES.items():
        value = _get(cfg, key)
        if key.rsplit(".", 1)[-1] in CHANNEL_KEYS and key.startswith("model."):
            if value is None or value == AUTO:
                continue  # filled from num_defect by _resolve_channels
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{origin(key)}: {key} must be an integer or {AUTO}, got {value!r}"
                )
            continue
        problem = rule.describe(value)
        if problem:
            raise ConfigError(f"{origin(key)}: {key} {problem}")


def _from(origin, key, source):
    """Give " (KEY from WHERE)" when `key` was not set in `source`, else ""."""
    where = origin(key)
    return "" if where == source else f" ({key.rsplit('.', 1)[-1]} from the {where})"


def _check_widths(cfg, origin):
    """Refuse model widths that the 32-group GroupNorm cannot divide (or attention heads cannot)."""
    params = cfg["model"]["params"]
    width = params.get("model_channels")
    mult = params.get("channel_mult")
    if mult is None:
        default = inspect.signature(model_class(cfg)).parameters["channel_mult"].default
        mult = default
    for m in mult:
        channels = width * m
        if channels % GROUPNORM_GROUPS:
            key = "model.params.model_channels"
            raise ConfigError(
                f"{origin(key)}: {key} {width} x channel_mult {m} = {channels} channels, which the "
                f"{GROUPNORM_GROUPS}-group normalisation cannot divide; use a multiple of "
                f"{GROUPNORM_GROUPS // math.gcd(GROUPNORM_GROUPS, m)}"
            )


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


def _resolve_channels(cfg, source, need_num_defect, origin=None):
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
            f"{origin('model.params.in_channels')}: model in_channels ({params['in_channels']}) and out_channels "
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
        where = origin("model.params.in_channels") if origin else source
        also = _from(origin, "data.params.num_defect", source) if origin else ""
        raise ConfigError(
            f"{where}: {exc}{also}; set model.params.in_channels/out_channels accordingly (or {AUTO})"
        ) from None
    return True


def validate(cfg, source="config", origins=None, *, need_num_defect=True):
    """
    Raise ConfigError (naming the key and where its value came from: `source`, the YAML file, or the
    command line per `origins`) for a value of the wrong type or range or an inconsistent config; fill
    num_defect and `auto` channels.

    :param need_num_defect: see :func:`resolve`.
    """
    origin = _origin(source, origins)
    accepted = _check_model_params(cfg, origin("model.target"))
    params = cfg["model"]["params"]
    check_rules(cfg, source, origins)
    _check_widths(cfg, origin)
    _resolve_channels(cfg, source, need_num_defect, origin)
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
    if dparams.get("mask_mode") not in MASK_MODES:
        raise ConfigError(f"{source}: diffusion.params.mask_mode must be one of {MASK_MODES}")
    train = cfg["train"]
    if train["seperate_channel_loss"] and dparams["parameterization"] != "x0":
        raise ConfigError(
            f"{origin('train.seperate_channel_loss')}: train.seperate_channel_loss needs diffusion "
            f"parameterization x0"
        )
    res = data["resolution"]
    ds = 2 ** (len(params.get("channel_mult") or accepted["channel_mult"]) - 1)
    if res % ds:
        where = origin("data.params.resolution")
        raise ConfigError(f"{where}: data.params.resolution {res} must be a multiple of {ds}")
    _validate_recipe_options(cfg, source)
    return cfg


def _flatten(node, prefix=""):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _covered(key, prefixes):
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def training_changes(old, new):
    """
    Give [(dotted key, old value, new value)] for the TRAINING_KEYS that differ between a
    checkpoint's config `old` and the new resolved config `new` (a model param the new config leaves
    at the class default (None) counts as unchanged when the old one also did not set it).
    """
    a, b = _flatten(old), _flatten(new)
    changes = []
    for key in sorted(set(a) | set(b)):
        if not _covered(key, TRAINING_KEYS):
            continue
        x, y = a.get(key), b.get(key)
        if isinstance(x, tuple):
            x = list(x)
        if isinstance(y, tuple):
            y = list(y)
        if key == "model.target" and MODEL_TARGETS.get(x, x) is MODEL_TARGETS.get(y, y):
            continue  # two names of one class, e.g. "large" and the release's target string
        if x != y:
            changes.append((key, x, y))
    return changes


def fixed_on_resume(key):
    """Tell whether a changed `key` can never be applied to a resumed run (the weights depend on it)."""
    return _covered(key, FIXED_ON_RESUME)


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


def dump(cfg):
    """Give the config as YAML text."""
    buf = io.StringIO()
    yaml.safe_dump(cfg, buf, sort_keys=False)
    return buf.getvalue()
