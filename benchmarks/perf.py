"""
Performance helpers: FLOP counts of a model's forward (and training) pass and a sampling batch
size that fills a GPU's free memory.

FLOPs are those :class:`torch.utils.flop_counter.FlopCounterMode` counts: 2 per multiply-accumulate
of convolutions, matrix products and attention; normalisation, activations and elementwise
arithmetic are not counted. Counting runs on the ``meta`` device: no arithmetic, no memory.
"""

import inspect
import logging

import torch
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

logger = logging.getLogger(__name__)

CPU_DEFAULT_BATCH = 8


def _meta_call(model, shape, *, backward=False):
    """Run `model` on meta tensors of `shape` under a FlopCounterMode; give the counted FLOPs."""
    state = {}
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        meta = torch.empty_like(tensor, device="meta")
        state[name] = meta.requires_grad_(backward and tensor.requires_grad)
    x = torch.empty(tuple(shape), device="meta", requires_grad=backward)
    args = (x,)
    if "timesteps" in inspect.signature(model.forward).parameters:
        args = (x, torch.zeros(shape[0], dtype=torch.long, device="meta"))
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.set_grad_enabled(backward):
            out = functional_call(model, state, args)
            if backward:
                out.float().square().mean().backward()
    return counter.get_total_flops()


def flops_per_forward(model, shape):
    """
    Give the FLOPs of one forward pass of `model` on an input of `shape`.

    `model` is called as ``model(x, timesteps)`` when its forward takes `timesteps` (the UNets),
    else as ``model(x)``. Its weights are not touched: the count runs on meta copies of them.

    :param shape: the input shape, batch included, e.g. (N, C, H, W).
    :return: an int.
    """
    return _meta_call(model, shape, backward=False)


def flops_per_train_step(model, shape):
    """
    Give the FLOPs of one forward and backward pass on an input of `shape`, input gradient included.

    Gradient checkpointing's recomputation is not counted: this is the model's work, the numerator
    of the model FLOP utilisation (MFU).
    """
    return _meta_call(model, shape, backward=True)


def suggest_batch_size(
    model, shape, device, max_fraction=0.8, *, autocast_dtype=None, max_batch=1024,
    cpu_default=CPU_DEFAULT_BATCH,
):  # fmt: skip
    """
    Give a sampling batch size for `model` on `device`: the largest that fits `max_fraction` of the
    free memory.

    On CUDA, forwards at batch 1 and 2 (no gradients, as in sampling) measure the peak memory; the
    difference is the memory per sample, the rest a fixed cost, and the batch is scaled to fill
    `max_fraction` of the memory free after the probe. On other devices it gives `cpu_default` (host
    memory is rarely the limit there; speed is).

    :param shape: one sample's shape (C, H, W).
    :param autocast_dtype: the dtype sampling will autocast to (e.g. torch.bfloat16), or None.
    :param max_batch: an upper bound.
    :return: an int in 1..max_batch.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return max(1, min(int(cpu_default), int(max_batch)))
    peaks = []
    for n in (1, 2):
        x = torch.randn(n, *shape, device=device)
        t = torch.zeros(n, dtype=torch.long, device=device)
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with (
            torch.no_grad(),
            torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None),
        ):
            model(x, t)
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
        del x, t
    per_sample = max(peaks[1] - peaks[0], 1)
    fixed = max(peaks[0] - per_sample, 0)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    budget = max_fraction * free - fixed
    batch = int(budget // per_sample)
    logger.info(
        "batch size probe: %.1f MB per sample, %.1f MB fixed, %.1f GB free -> %d",
        per_sample / 2**20, fixed / 2**20, free / 2**30, batch,
    )  # fmt: skip
    return max(1, min(batch, int(max_batch)))


@torch.no_grad()
def randomize_zero_parameters_(model, std=0.02, generator=None):
    """
    Give `model` back with every all-zero parameter redrawn from N(0, std^2), in place.

    The UNets zero-initialise their output convolutions, so a fresh model's output ignores its
    input; benchmarks and equivalence tests need a model whose output depends on it.
    """
    for p in model.parameters():
        if not p.any():
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32) * std
            p.copy_(noise.to(p.device, p.dtype))
    return model
