"""
Sampling on a canvas larger than the models were trained at: inpainting a defect into a good image at the
good image's own size.

The small (patch) model is fully convolutional and sees a patch, so it runs on any canvas whose sides are
multiples of its downsampling factor (:func:`pad_to_multiple` reflects the good image out to one, and
:func:`crop` takes the padding off again). The large model sees its whole training image: on a larger
canvas it either runs on a downscaled copy (:class:`DownscaledModel`) or is skipped, the small model then
denoising every step (``scripts/sample.py --large_at_size downscale|skip``).
"""

import math

import torch
import torch.nn.functional as F

LARGE_AT_SIZE = ("skip", "downscale")


def pad_to_multiple(x, multiple):
    """
    Give (x padded by reflection at the bottom and right to sides that are multiples of `multiple`,
    (height, width) before padding).

    :param x: an [N x C x H x W] Tensor.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def downsampling(model):
    """
    Give the factor by which a UNet (possibly inside wrappers) downsamples: 2 ** (levels - 1), so that
    a canvas whose sides are its multiples keeps every skip connection aligned.
    """
    for module in model.modules():
        if hasattr(module, "channel_mult"):
            return 2 ** (len(module.channel_mult) - 1)
    raise ValueError(f"{type(model).__name__} holds no UNet with a channel_mult")


def crop(x, size):
    """Give x [N x C x H x W] cut to its top-left `size` = (height, width)."""
    return x[..., : size[0], : size[1]]


def equivalent_timestep(diffusion, t, factor):
    """
    Give the timestep whose noise-to-signal ratio is that of x_t averaged over `factor` pixels.

    Averaging k pixels of x_t = sqrt(a) x0 + sqrt(1 - a) eps keeps the signal and divides the noise
    variance by k, so the downscaled tensor, rescaled, is a sample of a less noisy timestep t' with
    (1 - a') / a' = (1 - a) / (k a): no fresh noise is needed to match the model's training statistics.
    """
    a = diffusion.alpha_bar(t)
    target = (1.0 - a) / (factor * a)
    ratios = (1.0 - diffusion.alphas_cumprod) / diffusion.alphas_cumprod
    return int(min(range(t + 1), key=lambda s: abs(math.log(ratios[s]) - math.log(target))))


class DownscaledModel(torch.nn.Module):
    """
    A model trained at `size` x `size` run on a larger canvas through a downscaled copy.

    ``forward(x_t, t)`` averages x_t down to `size` (area), rescales it to the equivalent timestep t'
    (:func:`equivalent_timestep`), asks the model for its x0 prediction there, upsamples it (bilinear) to
    the canvas and returns the output the wrapped model would give at full size for that x0: the x0 itself
    (x0 parameterisation; mask logits are upsampled as logits), or the eps it implies at t.

    :param model: the wrapped model, called as ``model(x, t)`` on [N x C x size x size] inputs.
    :param diffusion: the GaussianDiffusion both share (for the schedule and the parameterisation).
    """

    def __init__(self, model, diffusion, size):
        super().__init__()
        self.model, self.diffusion, self.size = model, diffusion, int(size)

    def forward(self, x, t):
        h, w = x.shape[-2:]
        if (h, w) == (self.size, self.size):
            return self.model(x, t)
        step = int(t[0])
        factor = (h * w) / float(self.size * self.size)
        small_t = equivalent_timestep(self.diffusion, step, factor)
        scale = math.sqrt(self.diffusion.alpha_bar(small_t) / self.diffusion.alpha_bar(step))
        x_small = F.interpolate(x.float(), size=(self.size, self.size), mode="area") * scale
        out = self.model(x_small.to(x.dtype), torch.full_like(t, small_t))
        up = F.interpolate(out.float(), size=(h, w), mode="bilinear", align_corners=False)
        if self.diffusion.parameterization.value == "x0":
            return up.to(out.dtype)
        # eps parameterisation: the model's x0 at t', upsampled, re-expressed as eps at (x, t).
        x0_small, _ = self.diffusion.predict_x0_and_eps(out.float(), x_small, small_t)
        x0 = F.interpolate(x0_small, size=(h, w), mode="bilinear", align_corners=False)
        a = self.diffusion.alpha_bar(step)
        return ((x.float() / math.sqrt(a) - x0) / math.sqrt(1.0 / a - 1.0)).to(out.dtype)
