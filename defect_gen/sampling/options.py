"""
The settings of one sampling run, checked once and carried as one frozen object to every sampling call.
"""

import dataclasses

from ..errors import ConfigError
from ..fileio import absolute_path
from ..gaussian_diffusion import Sampler
from ..masks import DEFAULT_CLASS_WEIGHT_CORRECTION
from ..nn import AUTOCAST_DTYPES
from ..respace import sampling_timesteps

SAMPLER_NAMES = tuple(s.value for s in Sampler)  # "cold", "ddim", "ddpm": the --sampler choices


def normalise_respacing(num_timesteps, timestep_respacing):
    """Give "" for the full process, else the respacing string; ConfigError when it is invalid."""
    text = "" if timestep_respacing is None else str(timestep_respacing).strip()
    try:
        steps = sampling_timesteps(num_timesteps, text or None)
    except ValueError as exc:
        raise ConfigError(f"--timestep_respacing {text!r}: {exc}") from None
    return "" if len(steps) == num_timesteps else text


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """
    Every setting of a sampling run. Make it with :meth:`create`, which checks the values.

    :param switch_t: the switch S: the large model denoises t >= S, the small one t < S.
    :param timestep_respacing: "" for all T steps, else a respacing string (e.g. "50", "ddim50"): one
        form only, normalised by :meth:`create`.
    :param seed: sample i is drawn from seed + i.
    :param batch_size, progress: how the samples are computed, not what they are.
    :param resample: RePaint resampling count (conditioned modes only).
    """

    switch_t: int
    sampler: str = "cold"
    timestep_respacing: str = ""
    eta: float = 0.0
    seed: int = 0
    use_ema: bool = True
    precision: str = "fp32"
    class_weight_correction: float = DEFAULT_CLASS_WEIGHT_CORRECTION
    batch_size: int = 8
    resample: int = 0
    progress: bool = False

    @classmethod
    def create(cls, num_timesteps, *, switch_t, timestep_respacing="", **settings):
        """Give checked options for a diffusion of `num_timesteps` steps; ConfigError on a bad value."""
        T = num_timesteps
        if not 0 <= int(switch_t) <= T:
            raise ConfigError(
                f"--step_inference must lie in 0..{T} (0: large model only, {T}: small only), "
                f"got {switch_t}"
            )
        options = cls(
            switch_t=int(switch_t),
            timestep_respacing=normalise_respacing(T, timestep_respacing),
            **settings,
        )
        if options.sampler not in SAMPLER_NAMES:
            raise ConfigError(
                f"--sampler must be one of {', '.join(SAMPLER_NAMES)}, got {options.sampler!r}"
            )
        if options.precision not in AUTOCAST_DTYPES:
            raise ConfigError(
                f"--precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {options.precision!r}"
            )
        return options

    @property
    def respacing(self):
        """The respacing as sample_two_stage takes it: None for all T steps."""
        return self.timestep_respacing or None

    @property
    def autocast_dtype(self):
        return AUTOCAST_DTYPES[self.precision]

    def to_manifest(self, pair):
        """
        Give the parameters that decide every sample's content (a JSON-ready dict), for `pair`.

        Two runs with equal parameters give the same sample i; the manifest stores them so that a run
        with other parameters cannot add to the folder. Batch size, process count and device are not
        among them. Without a large model, "large_recep" is None (the small one takes every step).
        """
        return {
            "large_recep": None if pair.large is None else _checkpoint_id(pair.large),
            "small_recep": _checkpoint_id(pair.small),
            "step_inference": int(self.switch_t),
            "sampler": self.sampler,
            "timestep_respacing": self.timestep_respacing,
            "eta": float(self.eta),
            "seed": int(self.seed),
            "use_ema": bool(self.use_ema),
            "precision": self.precision,
            "resolution": int(pair.resolution),
            "num_defect": int(pair.num_defect),
            "num_timesteps": int(pair.num_timesteps),
            **_correction_record(pair, self.class_weight_correction),
        }


def _checkpoint_id(model):
    return {
        "path": absolute_path(model.path),
        "step": model.step,
        "bytes": model.num_bytes,
        "weights": model.weights,
    }


def _correction_record(pair, strength):
    """The class weights whose bias each model's output undoes; nothing when neither does (as before)."""
    weights = {m.kind: m.prior_correction for m in pair.models}
    if not any(weights.values()):
        return {}
    return {"class_weight_correction": {"strength": float(strength), **weights}}
