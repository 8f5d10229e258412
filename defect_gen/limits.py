"""
The type and range of every number a user gives: the :class:`Rule` that checks one value, the table
of each command's numeric options, and the check that applies a table to parsed arguments. The config
keys' rules are in :mod:`defect_gen.training.schema` (built from the same Rule).

Every command checks its parsed arguments with :func:`check_options` right after parsing, before it
reads or writes anything: a value of the wrong type, out of range, NaN or infinite is one ConfigError
naming the flag. Upper bounds are there so that a huge value is refused at once instead of hanging or
failing deep inside (a 10**12-sample run, a 2**31-pixel band, a seed torch cannot take).

This module imports nothing from the package but the errors, so any module can use it cheaply.
"""

import math

from .errors import ConfigError

# Seeds: sample i uses seed + i and training uses seed + step; below 2**31 both stay valid seeds for
# numpy's legacy generator and torch.
SEED_MAX = 2**31 - 1
# The most samples one sampling run may ask for (a sample folder of 10 M pairs is far beyond any use).
MAX_SAMPLES = 10**7
# Class ids are stored in 8-bit masks: 0 (background) .. 255.
MAX_DEFECT_CLASSES = 255
MAX_PIXELS = 2**14  # sides in pixels (resolutions, bands)
MAX_BATCH = 4096
MAX_STEPS = 10**9  # training iterations, intervals


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


# The numeric options of each command: argparse dest -> Rule. None (not given) is always accepted
# here; the command decides what an absent value means.
OPTION_RULES = {
    "train": {
        "num_defect": Rule("int", 1, MAX_DEFECT_CLASSES),
        "seperate_channel_loss": Rule("bool"),
    },
    "sample": {
        "step_inference": Rule("int", 0, 10**6),  # against the checkpoints' T in SamplingOptions
        "num_defect": Rule("int", 1, MAX_DEFECT_CLASSES),
        "num_samples": Rule("int", 1, MAX_SAMPLES),
        "batch_size": Rule("int", 1, MAX_BATCH),
        "seed": Rule("int", 0, SEED_MAX),
        # DDIM: sigma = eta x the DDPM sigma; above 1 the x0 coefficient's square root goes negative.
        "eta": Rule("float", 0, 1),
        # S x log(weight) is taken off the mask logits: 0 as trained, 1 the full correction.
        "class_weight_correction": Rule("float", 0, 1),
        "use_ema": Rule("bool"),
        "band": Rule("int", 0, MAX_PIXELS),  # against the resolution in conditioning.build_plan
        "resample": Rule("int", 0, 100),
        "max_candidates": Rule("int", 1, 100 * MAX_SAMPLES),
        "size": Rule("int", 1, MAX_PIXELS),  # against the models' size in conditioning.build_plan
        "harmonize": Rule("bool"),
        "good_texture": Rule("bool"),
        # a score is a difference of gray levels: beyond +-255 no candidate could pass or fail
        "min_score": Rule("float", -255, 255),
    },
    "evaluate": {
        "num_train_per_type": Rule("int", 1, 10**6),
        "resolution": Rule("int", 8, 4096),
        "seeds": Rule("int", 1, 1000),
        "first_seed": Rule("int", 0, 10**6),
        "iterations": Rule("int", 1, MAX_STEPS),
        "batch_size": Rule("int", 1, MAX_BATCH),
        "lr": Rule("float", 0, 10, open_lo=True),
        "dice_weight": Rule("float", 0, 1000),
        "class_balance": Rule("choice", choices=(0, 1)),
        "width": Rule("int", 1, 1024),
        "bootstrap": Rule("int", 0, 10**6),
        "tune_folds": Rule("int", 2, 100),
        "num_defect": Rule("int", 1, MAX_DEFECT_CLASSES),
        "max_val": Rule("int", 1, 10**9),
        "copy_paste_probability": Rule("float", 0, 1),
        "copy_paste_feather": Rule("float", 0, 64),
        "num_good": Rule("int", 0, 10**6),
        "with_good": Rule("int", 0, 1),
        "memorisation_threshold": Rule("float", 0, 1000),
        "inception_size": Rule("int", 8, 4096),
        "num_threads": Rule("int", 0, 4096),
        "workers": Rule("int", 1, 1024),
    },
    "prepare_data": {
        "num_defect": Rule("int", 1, MAX_DEFECT_CLASSES),
        "num_image_train": Rule("int", 1, 10**9),
    },
}


def check_options(args, command):
    """
    Raise ConfigError naming the flag for the first numeric option of `command` (a key of
    OPTION_RULES) in the parsed `args` that breaks its rule; give `args`.
    """
    for name, rule in OPTION_RULES[command].items():
        value = getattr(args, name, None)
        problem = None if value is None else rule.describe(value)
        if problem:
            raise ConfigError(f"--{name} {problem} (command line)")
    return args


def check_number(flag, value, rule):
    """Raise ConfigError naming `flag` when `value` breaks `rule` (for numbers parsed from text)."""
    problem = rule.describe(value)
    if problem:
        raise ConfigError(f"{flag} {problem} (command line)")
    return value
