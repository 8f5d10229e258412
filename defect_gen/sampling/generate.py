"""
Generation of samples from a large and a small model, in any mode (joint, mask, inpaint), with the
settings of a :class:`~defect_gen.sampling.options.SamplingOptions`; or from the small model alone
(a pair without a large model), which inpaints on any canvas and takes every step.

Sample i is drawn from its own generator seeded with `seed + i` (x_T and any sampler noise), so its content
depends neither on the batch it shares nor on the number of processes. Loading the models is
:mod:`defect_gen.sampling.pair`'s job, writing the samples :mod:`defect_gen.sampling.folder`'s.
"""

import numpy as np
import torch
from tqdm.auto import tqdm

from ..masks import RGB_CHANNELS, decode, split, to_uint8_rgb
from ..two_stage import sample_two_stage, stage_timesteps
from .canvas import DownscaledModel, crop, downsampling, pad_to_multiple
from .conditioning import known_generator
from .seam import add_good_texture, harmonize


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


def generate(pair, indices, options, *, call_log=None, plan=None):
    """
    Yield (batch indices, samples [B x C x H x W] float32 Tensor) for `indices`, `options.batch_size`
    at a time.

    Sample i is drawn from a generator seeded with `options.seed + i` alone (x_T and sampler noise), so
    it does not depend on its batch.

    :param options: the SamplingOptions (switch, sampler, respacing, eta, precision, seed, ...).
    :param plan: a conditioning.Plan (mask / inpaint modes) or None (joint). With the joint mask source,
        sample i's mask is the unconditional sample i's, drawn first.
    :param call_log: a list to which every model call is appended as {"batch", "model", "t"}.
    :raises ValueError: for a pair without a large model, unless the plan inpaints with the large
        model skipped (``plan.large_at_size`` "skip") and masks not drawn by the joint model.
    """
    alone = pair.large is None  # the small model takes every step, on every canvas
    if alone and not _small_alone_can_run(plan):
        raise ValueError(
            "without a large model only the inpaint mode with the large model skipped and masks "
            "not drawn by the joint model can run"
        )
    large, small = (None if alone else pair.large.model), pair.small.model
    recorders = []
    if call_log is not None:
        small = CallRecorder(small, "small", call_log)
        large = None if alone else CallRecorder(large, "large", call_log)
        recorders = [m for m in (large, small) if m is not None]
    bar = tqdm(
        total=len(indices), unit="sample", disable=not options.progress, dynamic_ncols=True,
        desc="sample",
    )  # fmt: skip
    try:
        for b, start in enumerate(range(0, len(indices), options.batch_size)):
            batch = list(indices[start : start + options.batch_size])
            for recorder in recorders:
                recorder.batch = b
            for group in _by_canvas(plan, batch):
                other = plan is not None and plan.canvas_for(group[0]) != (pair.resolution,) * 2
                if alone or other:  # another canvas than the models', or no large model
                    x = _sample_on_canvas(pair, large, small, group, options, plan)
                else:
                    cond = {}
                    if plan is not None:
                        cond = _conditioning(plan, group, pair, large, small, options)
                    x = _sample(pair, large, small, group, options, **cond)
                    if plan is not None and plan.mode == "inpaint":
                        x = _finished(x, cond["known"], cond["known_weight"], plan)
                yield group, x
                bar.update(len(group))
    finally:
        bar.close()


def _small_alone_can_run(plan):
    """Tell whether the small model alone can draw `plan`'s samples: inpainting, large model skipped."""
    return (
        plan is not None
        and plan.mode == "inpaint"
        and plan.large_at_size == "skip"
        and not plan.needs_joint_masks
    )


def _sample(pair, large, small, batch, options, *, size=None, switch_t=None, **cond):
    """
    Give sample_two_stage's samples of `batch`, each from its own generator seeded seed + i.

    :param size: (height, width) of the canvas; default the models' resolution.
    :param switch_t: default options.switch_t.
    """
    h, w = size or (pair.resolution, pair.resolution)
    return sample_two_stage(
        pair.diffusion, large, small, (len(batch), pair.channels, h, w),
        options.switch_t if switch_t is None else switch_t, sampler=options.sampler,
        timestep_respacing=options.respacing,
        generator=[torch.Generator().manual_seed(options.seed + i) for i in batch],
        eta=options.eta, autocast_dtype=options.autocast_dtype, **cond,
    )  # fmt: skip


def _by_canvas(plan, batch):
    """Give `batch` split into runs of candidates of one canvas size, in order."""
    if plan is None or plan.mode != "inpaint":
        return [batch]
    groups = {}
    for j in batch:
        groups.setdefault(plan.canvas_for(j), []).append(j)
    return list(groups.values())


def _sample_on_canvas(pair, large, small, group, options, plan):
    """
    Give the inpainted samples of `group` on their canvas, larger than the models' size (any size
    without a large model): padded by reflection to a multiple of the small model's downsampling, the
    large model skipped or run on a downscaled copy (plan.large_at_size), cut back to the canvas and
    finished (:func:`_finished`).
    """
    known, weight = plan.known(group)
    size = tuple(known.shape[-2:])
    factor = downsampling(small)
    known_p, _ = pad_to_multiple(known, factor)
    weight_p = torch.nn.functional.pad(
        weight, (0, known_p.shape[-1] - size[1], 0, known_p.shape[-2] - size[0]), value=1.0
    )  # the padding is known: the reflected good image
    if plan.large_at_size == "skip":
        large_model, switch_t = large, pair.num_timesteps  # the small model takes every step
    else:
        large_model, switch_t = DownscaledModel(large, pair.diffusion, pair.resolution), None
    x = _sample(
        pair, large_model, small, group, options, size=tuple(known_p.shape[-2:]), switch_t=switch_t,
        known=known_p, known_weight=weight_p, resample=options.resample,
        known_generator=[known_generator(options.seed, i) for i in group],
    )  # fmt: skip
    return _finished(crop(x, size), known, weight, plan)


def _finished(x, known, weight, plan):
    """
    Give inpainted samples x with their drawn band (RGB weight < 1) harmonized with the good image
    (plan.harmonize) and given its fine texture (plan.good_texture, on the pixels as they are written).
    """
    band = weight[:, 0] < 1
    rgb = x[:, :RGB_CHANNELS]
    if plan.harmonize:
        rgb = torch.stack(
            [harmonize(rgb[i : i + 1], known[i : i + 1, :RGB_CHANNELS], band[i : i + 1])[0]
             for i in range(x.shape[0])]
        ).clamp(-1, 1)  # fmt: skip
    if plan.good_texture:
        goods = to_uint8_rgb(known[:, :RGB_CHANNELS])
        pixels = [add_good_texture(*z) for z in zip(to_uint8_rgb(rgb), goods, band.cpu().numpy())]
        rgb = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return torch.cat([rgb.to(x), x[:, RGB_CHANNELS:]], dim=1)


def _conditioning(plan, batch, pair, large, small, options):
    """Give sample_two_stage's conditioning arguments for a batch (see defect_gen.sampling.conditioning)."""
    joint_maps = None
    if plan.needs_joint_masks:
        joint_maps = decode(_sample(pair, large, small, batch, options)).cpu()
    known, weight = plan.known(batch, joint_maps)
    return {
        "known": known, "known_weight": weight, "resample": options.resample,
        "known_generator": [known_generator(options.seed, i) for i in batch],
    }  # fmt: skip
