"""
Gaussian diffusion as the release configures it: schedules, the forward process, the training loss and
per-step samplers.

Schedules are computed in float64. Samplers are steps from one original timestep to the next one visited,
so the same code serves the full process and any respaced one; the caller passes the timesteps
(see :mod:`defect_gen.respace` and :mod:`defect_gen.two_stage`). Nothing here mutates the object after
construction.
"""

import enum
import math

import numpy as np
import torch
import torch.nn.functional as F

from .masks import RGB_CHANNELS


class Parameterization(enum.Enum):
    """What the network predicts."""

    X0 = "x0"
    EPS = "eps"


class Sampler(enum.Enum):
    """Per-step update rules."""

    COLD = "cold"  # the release's deterministic "improved cold diffusion" update
    DDIM = "ddim"  # DDIM with eta (eta = 0: deterministic)
    DDPM = "ddpm"  # ancestral sampling with the posterior variance


SCHEDULES = ("cosine", "linear")
# How the sampler reads the mask channels of the model's output (see GaussianDiffusion).
MASK_MODES = ("faithful", "consistent")


def get_named_beta_schedule(
    name, num_timesteps, *, linear_start=1e-4, linear_end=2e-2, cosine_s=8e-3
):
    """
    Give a float64 array of betas.

    :param name: "cosine" (Nichol & Dhariwal, s = 0.008, betas clipped at 0.999) or "linear" (the release's
        scaled linear schedule: linspace(sqrt(start), sqrt(end), T) ** 2).
    """
    if name == "linear":
        return np.linspace(linear_start**0.5, linear_end**0.5, num_timesteps, dtype=np.float64) ** 2
    if name == "cosine":
        steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps + cosine_s
        alphas_cumprod = np.cos(steps / (1 + cosine_s) * math.pi / 2) ** 2
        alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
        return np.clip(1 - alphas_cumprod[1:] / alphas_cumprod[:-1], 0, 0.999)
    raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")


def _extract(arr, t, ndim):
    """Give arr[t] as a float32 Tensor shaped [N, 1, ..., 1] for broadcasting over an ndim-d batch."""
    out = torch.from_numpy(arr).to(t.device)[t].float()
    return out.reshape(-1, *([1] * (ndim - 1)))


def mean_flat(x):
    """Give the mean over all non-batch dimensions."""
    return x.mean(dim=list(range(1, x.dim())))


def per_sample_randn(shape, generator=None, device=None):
    """
    Give standard normal noise of `shape`, drawn on the CPU so that it is the same on every device.

    :param generator: None, a torch.Generator, or a list of N generators: then sample i of the batch is drawn
        from generator i alone, so it does not depend on which batch it shares.
    """
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        noise = torch.cat([torch.randn(1, *shape[1:], generator=g) for g in generator])
    else:
        noise = torch.randn(*shape, generator=generator)
    return noise.to(device) if device is not None else noise


class GaussianDiffusion:
    """
    A diffusion process of `num_timestep` steps with the release's options.

    :param parameterization: "x0" (the release's) or "eps".
    :param schedule: "cosine" (the release's) or "linear".
    :param num_timestep: number of diffusion steps T.
    :param seperate_channel_loss: MSE on RGB plus `mask_loss_weight` x cross-entropy on the mask channels
        (x0 parameterisation only) instead of MSE over all channels. The release's spelling.
    :param mask_loss_weight: weight of the mask cross-entropy (the release's 0.2).
    :param clip_denoised: clamp predicted x0 when sampling: every channel to [-1, 1] in the faithful
        mask mode; RGB to [-1, 1] and mask channels to [0, 1] in the consistent one.
    :param mask_mode: how the sampler treats the mask channels.
        "faithful" (the release's): the model output is x0 for every channel, whatever the loss.
        "consistent": with `seperate_channel_loss` the mask outputs are the logits the cross-entropy
        trained, so the sampler takes their softmax as the x0 mask (probabilities) before the update;
        mask channels of x0 are clamped to [0, 1] (their data range) instead of [-1, 1]; and the final
        step gives the one-hot of the argmax of the unclamped mask prediction as the clean mask, so no
        clamp can tie channels at 1.0 and turn a defect into background.
    """

    def __init__(
        self,
        *,
        parameterization="x0",
        schedule="cosine",
        num_timestep=1000,
        seperate_channel_loss=False,
        mask_loss_weight=0.2,
        clip_denoised=True,
        mask_mode="faithful",
        linear_start=1e-4,
        linear_end=2e-2,
        cosine_s=8e-3,
    ):
        self.parameterization = Parameterization(parameterization)
        self.schedule = schedule
        self.seperate_channel_loss = bool(seperate_channel_loss)
        self.mask_loss_weight = float(mask_loss_weight)
        self.clip_denoised = clip_denoised
        if mask_mode not in MASK_MODES:
            raise ValueError(f"unknown mask_mode {mask_mode!r}; choose one of {MASK_MODES}")
        self.mask_mode = mask_mode
        if self.seperate_channel_loss and self.parameterization is not Parameterization.X0:
            raise ValueError(
                "seperate_channel_loss needs parameterization x0: the mask cross-entropy is taken on the "
                "predicted clean mask channels"
            )
        self.betas = get_named_beta_schedule(
            schedule,
            num_timestep,
            linear_start=linear_start,
            linear_end=linear_end,
            cosine_s=cosine_s,
        )
        self.num_timesteps = len(self.betas)
        self.alphas_cumprod = np.cumprod(1.0 - self.betas)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)

    @property
    def mask_logits(self):
        """Whether the sampler reads the model's mask outputs as cross-entropy logits (consistent mode)."""
        return self.mask_mode == "consistent" and self.seperate_channel_loss

    def alpha_bar(self, t):
        """Give alphas_cumprod at original timestep t as a float64; t = -1 (after the last step) gives 1."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def q_sample(self, x_start, t, noise=None):
        """
        Give x_t ~ q(x_t | x_0) = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise.

        :param x_start: an [N x C x H x W] Tensor.
        :param t: an [N] LongTensor of timesteps.
        """
        if noise is None:
            noise = torch.randn_like(x_start)
        return (
            _extract(self.sqrt_alphas_cumprod, t, x_start.dim()) * x_start
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.dim()) * noise
        )

    def training_losses(
        self, model, x_start, t, noise=None, model_kwargs=None, mask_class_weights=None
    ):
        """
        Give the per-sample training losses at timesteps `t`.

        :param model: called as model(x_t, t, **model_kwargs).
        :param x_start: an [N x C x H x W] Tensor in the channel layout.
        :param t: an [N] LongTensor of timesteps.
        :param mask_class_weights: None, or a [K + 1] Tensor of per-class weights (background first):
            each pixel's mask loss (its cross-entropy, or with the plain MSE loss its squared errors on
            the mask channels) is multiplied by the weight of its true class (soft targets: the
            target-weighted mix of the weights).
        :return: a dict of [N] Tensors: "loss", and "loss_rgb" and "loss_mask" (the parts; with the plain
            MSE loss they are the MSE over the RGB and over the mask channels, for logging).
        """
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        out = model(x_t, t, **(model_kwargs or {})).float()
        target = x_start if self.parameterization is Parameterization.X0 else noise
        sq = (out - target) ** 2
        loss_rgb = mean_flat(sq[:, :RGB_CHANNELS])
        pixel_weight = None
        if mask_class_weights is not None:
            weights = torch.as_tensor(mask_class_weights, dtype=torch.float32, device=out.device)
            if weights.shape != (x_start.shape[1] - RGB_CHANNELS,):
                raise ValueError(
                    f"{weights.numel()} mask class weights for "
                    f"{x_start.shape[1] - RGB_CHANNELS} mask channels"
                )
            # [N x 1 x H x W]: the weight of each pixel's class, from the clean mask (x_start).
            pixel_weight = torch.einsum("nkhw,k->nhw", x_start[:, RGB_CHANNELS:].float(), weights)
            pixel_weight = pixel_weight.unsqueeze(1)
        if self.seperate_channel_loss:
            ce = F.cross_entropy(out[:, RGB_CHANNELS:], target[:, RGB_CHANNELS:], reduction="none")
            if pixel_weight is not None:
                ce = ce * pixel_weight[:, 0]
            loss_mask = mean_flat(ce)
            loss = loss_rgb + self.mask_loss_weight * loss_mask
        else:
            if pixel_weight is not None:
                sq = torch.cat([sq[:, :RGB_CHANNELS], sq[:, RGB_CHANNELS:] * pixel_weight], dim=1)
            loss_mask = mean_flat(sq[:, RGB_CHANNELS:])
            loss = mean_flat(sq)
        return {"loss": loss, "loss_rgb": loss_rgb, "loss_mask": loss_mask}

    def predict_x0_and_eps(self, model_out, x_t, t):
        """
        Give (x0_pred, eps) implied by a model output at timestep t, both unclamped.

        :param t: an int, the original timestep of x_t.
        """
        ab = self.alpha_bar(t)
        if self.parameterization is Parameterization.X0:
            x0 = model_out
            eps = (x_t / math.sqrt(ab) - x0) / math.sqrt(1.0 / ab - 1.0)
        else:
            eps = model_out
            x0 = x_t / math.sqrt(ab) - math.sqrt(1.0 / ab - 1.0) * eps
        return x0, eps

    def model_x0(self, model_out):
        """
        Give the x0 prediction a model output stands for (x0 parameterisation), before clamping.

        In the consistent mask mode a model trained with the cross-entropy mask loss outputs logits:
        their softmax (class probabilities, in [0, 1] like the one-hot data) is its x0 mask. Otherwise
        the output is returned as it is.
        """
        if self.mask_logits:
            rgb, logits = model_out[:, :RGB_CHANNELS], model_out[:, RGB_CHANNELS:]
            return torch.cat([rgb, torch.softmax(logits.float(), dim=1).to(rgb.dtype)], dim=1)
        return model_out

    def clamp_x0(self, x0):
        """
        Give x0 clamped to its data range when `clip_denoised`: [-1, 1] for every channel in the
        faithful mode (the release's); RGB to [-1, 1] and mask channels to [0, 1] in the consistent one.
        """
        if not self.clip_denoised:
            return x0
        if self.mask_mode == "faithful":
            return x0.clamp(-1, 1)
        return torch.cat(
            [x0[:, :RGB_CHANNELS].clamp(-1, 1), x0[:, RGB_CHANNELS:].clamp(0, 1)], dim=1
        )

    def final_x0(self, x0_pred, mask_scores):
        """
        Give the clean sample of the last step in the consistent mode: the clamped x0's RGB and the
        one-hot of the argmax of `mask_scores`, the unclamped mask prediction (the logits of a
        cross-entropy model), so that clamped channels tied at 1.0 cannot decode to background.
        """
        x0_hat = self.clamp_x0(x0_pred)
        mask = mask_scores
        onehot = F.one_hot(mask.argmax(dim=1), mask.shape[1]).movedim(-1, 1).to(x0_hat.dtype)
        return torch.cat([x0_hat[:, :RGB_CHANNELS], onehot], dim=1)

    def sample_step(self, model_out, x_t, t, t_prev, *, sampler="cold", eta=0.0, generator=None):
        """
        Give (x_{t_prev}, x0_hat): one reverse step from original timestep t to t_prev < t.

        `t_prev` is the next timestep the sampler visits (t - 1 without respacing), or -1 after the last
        step, where the result is the clean sample.

        :param model_out: the model's [N x C x H x W] output at (x_t, t).
        :param sampler: "cold", "ddim" or "ddpm".
        :param eta: DDIM stochasticity (0 = deterministic).
        :param generator: for the noise of stochastic samplers; see :func:`per_sample_randn`.
        """
        sampler = Sampler(sampler)
        x0_pred, eps = self.predict_x0_and_eps(self.model_x0(model_out), x_t, t)
        if self.mask_mode == "consistent" and t_prev < 0:
            logits = self.seperate_channel_loss
            x0_final = self.final_x0(x0_pred, (model_out if logits else x0_pred)[:, RGB_CHANNELS:])
            return x0_final, x0_final
        x0_hat = self.clamp_x0(x0_pred)
        ab_t, ab_prev = self.alpha_bar(t), self.alpha_bar(t_prev)

        if sampler is Sampler.COLD:
            # Remove the noise level of t and put back that of t_prev, both built from the same
            # eps_hat (taken from the unclamped prediction) and the clamped x0_hat.
            x_prev = (
                x_t
                - (math.sqrt(ab_t) * x0_hat + math.sqrt(1 - ab_t) * eps)
                + (math.sqrt(ab_prev) * x0_hat + math.sqrt(1 - ab_prev) * eps)
            )
            return x_prev, x0_hat

        # DDIM and DDPM use the eps consistent with the (clamped) x0_hat, as guided-diffusion does.
        eps = (x_t - math.sqrt(ab_t) * x0_hat) / math.sqrt(1 - ab_t)
        if t_prev < 0:
            return x0_hat, x0_hat
        if sampler is Sampler.DDIM:
            sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
            x_prev = math.sqrt(ab_prev) * x0_hat + math.sqrt(1 - ab_prev - sigma**2) * eps
        else:
            beta = 1 - ab_t / ab_prev
            coef_x0 = beta * math.sqrt(ab_prev) / (1 - ab_t)
            coef_xt = (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab_t)
            x_prev = coef_x0 * x0_hat + coef_xt * x_t
            sigma = math.sqrt(beta * (1 - ab_prev) / (1 - ab_t))
        if sigma > 0:
            x_prev = x_prev + sigma * per_sample_randn(x_t.shape, generator, x_t.device).to(
                x_t.dtype
            )
        return x_prev, x0_hat
