"""
Generation of samples from a large and a small model: the parameters that decide a sample's content and
the batches themselves, in any mode (joint, mask, inpaint).

Sample i is drawn from its own generator seeded with `seed + i` (x_T and any sampler noise), so its content
depends neither on the batch it shares nor on the number of processes. Loading the models is
:mod:`defect_gen.sampling.pair`'s job, writing the samples :mod:`defect_gen.sampling.folder`'s.
"""

import os

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..masks import DEFAULT_CLASS_WEIGHT_CORRECTION, decode, split, to_uint8_rgb
from ..precision import AUTOCAST_DTYPES
from ..respace import sampling_timesteps
from ..two_stage import sample_two_stage, stage_timesteps
from .conditioning import known_generator

SAMPLERS = ("cold", "ddim", "ddpm")


def normalise_respacing(num_timesteps, timestep_respacing):
    """Give "" for the full process, else the respacing string; ConfigError when it is invalid."""
    text = "" if timestep_respacing is None else str(timestep_respacing).strip()
    try:
        steps = sampling_timesteps(num_timesteps, text or None)
    except ValueError as exc:
        raise ConfigError(f"--timestep_respacing {text!r}: {exc}") from None
    return "" if len(steps) == num_timesteps else text


def generation_params(
    pair, *, switch_t, sampler="cold", timestep_respacing="", eta=0.0, seed=0, use_ema=True,
    precision="fp32", class_weight_correction=DEFAULT_CLASS_WEIGHT_CORRECTION,
):  # fmt: skip
    """
    Give the parameters that decide every sample's content (a JSON-ready dict).

    Two runs with equal parameters give the same sample i; the manifest stores them so that a run with
    other parameters cannot add to the folder. Batch size, process count and device are not among them.
    """
    T = pair.num_timesteps
    if not 0 <= int(switch_t) <= T:
        raise ConfigError(
            f"--step_inference must lie in 0..{T} (0: large model only, {T}: small only), got {switch_t}"
        )
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if precision not in AUTOCAST_DTYPES:
        raise ConfigError(
            f"--precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {precision!r}"
        )

    def ckpt_id(m):
        path = m.path if "://" in m.path else os.path.abspath(m.path)
        return {"path": path, "step": m.step, "bytes": m.num_bytes, "weights": m.weights}

    return {
        "large_recep": ckpt_id(pair.large),
        "small_recep": ckpt_id(pair.small),
        "step_inference": int(switch_t),
        "sampler": sampler,
        "timestep_respacing": normalise_respacing(T, timestep_respacing),
        "eta": float(eta),
        "seed": int(seed),
        "use_ema": bool(use_ema),
        "precision": precision,
        "resolution": int(pair.resolution),
        "num_defect": int(pair.num_defect),
        "num_timesteps": int(T),
        **_correction_record(pair, class_weight_correction),
    }


def _correction_record(pair, strength):
    """The class weights whose bias each model's output undoes; nothing when neither does (as before)."""
    weights = {m.kind: m.prior_correction for m in (pair.large, pair.small)}
    if not any(weights.values()):
        return {}
    return {"class_weight_correction": {"strength": float(strength), **weights}}


def steps_record(num_timesteps, switch_t, timestep_respacing):
    """Give {"large": {...}, "small": {...}}: count, first, last and the list of timesteps each model runs."""
    large, small = stage_timesteps(num_timesteps, switch_t, timestep_respacing or None)

    def one(steps):
        return {
            "count": len(steps),
            "first": steps[0] if steps else None,
            "last": steps[-1] if steps else None,
            "timesteps": steps,
        }

    return {"large": one(large), "small": one(small), "total": len(large) + len(small)}


def to_arrays(x):
    """
    Give (rgb [N x H x W x 3] uint8, index [N x H x W] uint8) of a sampled batch.

    :param x: an [N x (4 + K) x H x W] Tensor in the channel layout.
    """
    rgb, _ = split(x)
    return to_uint8_rgb(rgb), decode(x).cpu().numpy().astype(np.uint8)


class CallRecorder(torch.nn.Module):
    """A model wrapper that appends {"model": name, "t": t} to `log` for each call (one t per batch)."""

    def __init__(self, model, name, log):
        super().__init__()
        self.model = model
        self.name = name
        self.log = log
        self.batch = None

    def forward(self, x, t):
        self.log.append({"batch": self.batch, "model": self.name, "t": int(t[0])})
        return self.model(x, t)


def generate(
    pair, indices, *, switch_t, seed=0, batch_size=8, sampler="cold", timestep_respacing="", eta=0.0,
    precision="fp32", progress=False, call_log=None, plan=None, resample=0,
):  # fmt: skip
    """
    Yield (batch indices, samples [B x C x H x W] float32 Tensor) for `indices`, `batch_size` at a time.

    Sample i is drawn from a generator seeded with `seed + i` alone (x_T and sampler noise), so it does
    not depend on its batch.

    :param plan: a conditioning.Plan (mask / inpaint modes) or None (joint). With the joint mask source,
        sample i's mask is the unconditional sample i's, drawn first.
    :param resample: RePaint resampling count (conditioned modes only).

    :param call_log: a list to which every model call is appended as {"batch", "model", "t"}.
    :param progress: show a tqdm bar in samples (with samples/s).
    """
    large, small = pair.large.model, pair.small.model
    if call_log is not None:
        large = CallRecorder(large, "large", call_log)
        small = CallRecorder(small, "small", call_log)
    autocast_dtype = AUTOCAST_DTYPES[precision]
    shape_chw = (pair.channels, pair.resolution, pair.resolution)
    bar = tqdm(
        total=len(indices), unit="sample", disable=not progress, dynamic_ncols=True, desc="sample"
    )
    try:
        for b, start in enumerate(range(0, len(indices), batch_size)):
            batch = list(indices[start : start + batch_size])
            generators = [torch.Generator().manual_seed(seed + i) for i in batch]
            if call_log is not None:
                large.batch = small.batch = b
            cond = {}
            if plan is not None:
                cond = _conditioning(
                    plan, batch, seed, pair, large, small, switch_t, sampler, timestep_respacing,
                    eta, autocast_dtype, resample,
                )  # fmt: skip
            x = sample_two_stage(
                pair.diffusion, large, small, (len(batch), *shape_chw), switch_t, sampler=sampler,
                timestep_respacing=timestep_respacing or None, generator=generators, eta=eta,
                autocast_dtype=autocast_dtype, **cond,
            )  # fmt: skip
            yield batch, x
            bar.update(len(batch))
    finally:
        bar.close()


def _conditioning(
    plan, batch, seed, pair, large, small, switch_t, sampler, respacing, eta, autocast_dtype, resample
):  # fmt: skip
    """Give sample_two_stage's conditioning arguments for a batch (see defect_gen.sampling.conditioning)."""
    joint_maps = None
    if plan.needs_joint_masks:
        x = sample_two_stage(
            pair.diffusion, large, small, (len(batch), pair.channels, pair.resolution, pair.resolution),
            switch_t, sampler=sampler, timestep_respacing=respacing or None, eta=eta,
            generator=[torch.Generator().manual_seed(seed + i) for i in batch],
            autocast_dtype=autocast_dtype,
        )  # fmt: skip
        joint_maps = decode(x).cpu()
    known, weight = plan.known(batch, joint_maps)
    return {
        "known": known, "known_weight": weight, "resample": resample,
        "known_generator": [known_generator(seed, i) for i in batch],
    }  # fmt: skip
