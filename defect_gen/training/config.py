"""
Training configuration: our YAML files and the release's `large_recep.yml` / `small_recep.yml`, read
unchanged, validated, overridden from the command line and written into the run folder; the resume
comparison; the model and diffusion a config describes.

The keys, defaults and value rules themselves are tables in :mod:`defect_gen.training.schema`.
"""

import copy
import inspect
import io
import math
import re

import blobfile as bf
import yaml

from ..errors import ConfigError
from ..gaussian_diffusion import MASK_MODES, SCHEDULES, Parameterization
from ..masks import check_channels, num_channels, num_defect_from_channels
from .schema import (
    AUTO,
    CHANNEL_KEYS,
    DEFAULTS,
    DIFFUSION_TARGETS,
    FIXED_ON_RESUME,
    FLOAT_KEYS,
    GROUPNORM_GROUPS,
    MODEL_TARGETS,
    REQUIRED_MODEL_PARAMS,
    RULES,
    TRAINING_KEYS,
)


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
            if isinstance(value, bool) or not isinstance(value, int) or rule.problem(value):
                raise ConfigError(
                    f"{origin(key)}: {key} must be an integer in [1, {rule.hi}] or {AUTO}, "
                    f"got {value!r}"
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
    _validate_recipe_options(cfg, origin)
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


def _validate_recipe_options(cfg, origin):
    """Check the EMA warm-up, class-weight, crop and good-image keys (`origin`: key -> its source)."""
    train, data = cfg["train"], cfg["data"]["params"]
    if not isinstance(train["ema_warmup"], bool):
        raise ConfigError(
            f"{origin('train.ema_warmup')}: "
            f"train.ema_warmup must be true or false"
        )
    power, cap = train["mask_class_weight_power"], train["mask_class_weight_cap"]
    if not _is_number(power) or power < 0:
        raise ConfigError(
            f"{origin('train.mask_class_weight_power')}: "
            f"train.mask_class_weight_power must be a number >= 0"
        )
    if cap is not None:
        if not power:
            raise ConfigError(
                f"{origin('train.mask_class_weight_cap')}: train.mask_class_weight_cap is set but "
                "train.mask_class_weight_power is "
                "0 (class weights off): set a power > 0 or remove the cap"
            )
        if not _is_number(cap) or cap < 1:
            raise ConfigError(
                f"{origin('train.mask_class_weight_cap')}: "
                f"train.mask_class_weight_cap must be a number >= 1"
            )
    crop, res = data["crop"], data["resolution"]
    if crop is not None:
        ds = 2 ** (len(cfg["model"]["params"].get("channel_mult") or (1, 2, 4)) - 1)
        if not isinstance(crop, int) or isinstance(crop, bool) or not 1 <= crop <= res:
            raise ConfigError(
                f"{origin('data.params.crop')}: data.params.crop must be an integer in 1..{res} "
                f"(data.params.resolution), got {crop!r}"
            )
        if crop % ds:
            raise ConfigError(
                f"{origin('data.params.crop')}: "
                f"data.params.crop {crop} must be a multiple of {ds}"
            )
    if data["crop_random"] is not None:
        if crop is None:
            raise ConfigError(
                f"{origin('data.params.crop_random')}: data.params.crop_random is set but "
                "data.params.crop is not (crops off)"
            )
        if not _is_number(data["crop_random"]) or not 0 <= data["crop_random"] <= 1:
            raise ConfigError(
                f"{origin('data.params.crop_random')}: "
                f"data.params.crop_random must lie in [0, 1]"
            )
    num_good = data["num_good"]
    if not isinstance(num_good, int) or isinstance(num_good, bool) or num_good < 0:
        raise ConfigError(
            f"{origin('data.params.num_good')}: "
            f"data.params.num_good must be a non-negative integer"
        )


def dump(cfg):
    """Give the config as YAML text."""
    buf = io.StringIO()
    yaml.safe_dump(cfg, buf, sort_keys=False)
    return buf.getvalue()
