"""
What a training config may hold: every key with its default, the type and range of each value, the
model and diffusion classes its `target` strings name, and the keys that matter when a run resumes.

Plain tables and the :class:`Rule` that checks one value; reading, merging, overriding and checking a
whole config is :mod:`defect_gen.training.config`.
"""

from ..gaussian_diffusion import MASK_MODES, SCHEDULES, Parameterization
from ..limits import MAX_BATCH, MAX_DEFECT_CLASSES, MAX_PIXELS, MAX_STEPS, SEED_MAX, Rule
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
MAX_CHANNELS = MAX_DEFECT_CLASSES + 4  # 3 RGB + background + K


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
    # no upper bound: a finite value too large diverges, and a non-finite loss stops training cleanly
    return Rule("float", 0, open_lo=True, null=null)


# The type and range of each value, by dotted key; a key absent here is checked by `validate` only.
RULES = {
    "diffusion.target": Rule("choice", choices=DIFFUSION_TARGETS),
    "diffusion.params.parameterization": Rule(
        "choice", choices=tuple(p.value for p in Parameterization)
    ),
    "diffusion.params.schedule": Rule("choice", choices=SCHEDULES),
    "diffusion.params.num_timestep": Rule("int", 1, 100000),
    "diffusion.params.mask_mode": Rule("choice", choices=MASK_MODES),
    "model.ckpt": Rule("str", null=True),
    "model.params.image_size": Rule("int", 1, MAX_PIXELS, null=True),
    "model.params.in_channels": Rule("int", 1, MAX_CHANNELS, null=True),
    "model.params.out_channels": Rule("int", 1, MAX_CHANNELS, null=True),
    "model.params.model_channels": Rule("int", 1, 1024, null=True),
    "model.params.num_res_blocks": Rule("int", 1, 32, null=True),
    "model.params.attention_downsample": Rule("int_list", 1, MAX_PIXELS, null=True),
    "model.params.attention_resolutions": Rule("int_or_list", 1, MAX_PIXELS, null=True),
    "model.params.dropout": Rule("float", 0, 1, open_hi=True, null=True),
    "model.params.channel_mult": Rule("int_list", 1, 64, null=True),
    "model.params.conv_resample": Rule("bool", null=True),
    "model.params.dims": Rule("choice", choices=(1, 2, 3), null=True),
    "model.params.num_classes": Rule("int", 1, MAX_DEFECT_CLASSES, null=True),
    "model.params.use_checkpoint": Rule("bool", null=True),
    "model.params.num_heads": Rule("int", 1, 1024, null=True),
    "model.params.num_head_channels": Rule("int", -1, 4096, null=True),
    "model.params.num_heads_upsample": Rule("int", -1, 1024, null=True),
    "model.params.use_scale_shift_norm": Rule("bool", null=True),
    "model.params.resblock_updown": Rule("bool", null=True),
    "model.params.use_new_attention_order": Rule("bool", null=True),
    "model.params.attention_backend": Rule("choice", choices=("sdpa", "math"), null=True),
    "data.bs_per_gpu": Rule("int", 1, MAX_BATCH),
    "data.num_workers": Rule("int", 0, 256),
    "data.params.dir": Rule("str", null=True),
    "data.params.resolution": Rule("int", 8, MAX_PIXELS),
    "data.params.num_image_train": Rule("int", 1, 10**9, null=True),
    "data.params.num_defect": Rule("int", 1, MAX_DEFECT_CLASSES, null=True),
    "data.params.classes": Rule("str_list", null=True),
    "data.params.keep_aspect": Rule("bool"),
    "data.params.random_flip": Rule("bool"),
    "data.params.crop": Rule("int", 1, MAX_PIXELS, null=True),
    "data.params.crop_random": Rule("float", 0, 1, null=True),
    "data.params.num_good": Rule("int", 0, 10**9),
    "optimizer.params.lr": _positive_float(),
    "optimizer.params.weight_decay": Rule("float", 0, 100),
    "optimizer.params.betas": Rule("float_list", 0, 1, open_hi=True, length=2),
    "optimizer.params.fused": Rule("bool", null=True),
    "train.iterations": Rule("int", 1, MAX_STEPS),
    "train.log_image_interval": Rule("int", 1, MAX_STEPS),
    "train.save_ckpt_interval": Rule("int", 1, MAX_STEPS),
    "train.max_images": Rule("int", 0, 1024),  # 0: no previews
    "train.eval_interval": Rule("int", 1, MAX_STEPS),
    "train.log_interval": Rule("int", 1, MAX_STEPS),
    "train.ema_rate": Rule("float", 0, 1, open_hi=True),
    "train.grad_clip": _positive_float(null=True),
    "train.precision": Rule("choice", choices=PRECISIONS),
    "train.channels_last": Rule("bool"),
    "train.compile": Rule("bool"),
    "train.seed": Rule("int", 0, SEED_MAX),
    "train.seperate_channel_loss": Rule("bool"),
    "train.mask_loss_weight": Rule("float", 0, 1000),
    "train.ema_warmup": Rule("bool"),
    "train.mask_class_weight_power": Rule("float", 0, 100),
    "train.mask_class_weight_cap": Rule("float", 1, 10**6, null=True),
    "train.preview_respacing": Rule("str_or_int"),
    "train.keep_checkpoints": Rule("int", 1, 10**9, null=True),  # null keeps all
}
