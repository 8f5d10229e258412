"""
What a training config may hold: every key with its default, the type and range of each value, the
model and diffusion classes its `target` strings name, and the keys that matter when a run resumes.

Plain tables and the :class:`Rule` that checks one value; reading, merging, overriding and checking a
whole config is :mod:`defect_gen.training.config`.
"""

import math

from ..gaussian_diffusion import MASK_MODES, SCHEDULES, Parameterization
from ..patch_unet import PatchUNetModel
from ..unet import UNetModel

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
        "ema_warmup": False,  # effective rate min(ema_rate, (1 + step) / (10 + step)); see training.loop
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
