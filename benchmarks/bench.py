"""
Speed and memory of Defect-Gen's training step and two-stage sampling, each option against the
reference mode.

    python benchmarks/bench.py --preset tiny --device cpu            # < 2 min on 2 CPU cores
    python benchmarks/bench.py --preset shipped --device cuda        # the shipped 256 px models

Measurements, each for every mode that changes something, in the same run as the reference mode:
  large train, small train   forward + backward + AdamW step through diffusion.training_losses
                             (no EMA update)
  sample 1000 steps*         two-stage sampling over all T steps (large model for t >= switch, small
                             below), extrapolated: the per-step time of each model, timed on
                             --sample-steps steps, times the number of steps it takes
  sample R steps             a real two-stage run with R respaced steps (--respacing)

The reference mode is the release's way: fp32, explicit-softmax attention ("math"), NCHW, eager,
AdamW without the fused kernel, no gradient checkpointing. Every other mode changes one thing;
"combined" takes every speed option at once. The modes of a measurement are timed in turns
(reference, sdpa, ..., then in reverse order), so that a change of machine load hits them alike;
each figure is the median of --reps repetitions after --warmup ones. Peak memory is taken during the
warm-up: torch.cuda.max_memory_allocated on CUDA, the growth of the resident set size (VmHWM, reset
through /proc/self/clear_refs) on a Linux CPU. FLOPs come from
torch.utils.flop_counter.FlopCounterMode, counted once per model and shape on meta tensors.
MFU = achieved FLOP/s / peak: 790 TFLOP/s dense bf16/fp16 on an H100/H200; for fp32 modes 495 TFLOP/s
dense TF32 when cuDNN may use TF32 for convolutions (PyTorch's default, and the convolutions are nearly all
the FLOPs), else 67 TFLOP/s fp32; on a CPU, a timed fp32 matmul.
"""

import argparse
import contextlib
import copy
import ctypes
import datetime
import functools
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perf import (  # noqa: E402
    flops_per_forward,
    flops_per_train_step,
    randomize_zero_parameters_,
    suggest_batch_size,
)

from defect_gen.errors import ConfigError  # noqa: E402
from defect_gen.gaussian_diffusion import per_sample_randn  # noqa: E402
from defect_gen.masks import decode, encode, num_defect_from_channels  # noqa: E402
from defect_gen.training.config import load_config  # noqa: E402
from defect_gen.training.factory import build_diffusion, build_model  # noqa: E402
from defect_gen.two_stage import sample_two_stage, stage_timesteps  # noqa: E402

PRESETS = {
    "tiny": dict(
        large="configs/tiny_large.yaml", small="configs/tiny_small.yaml", train_batch=4,
        sample_batch=4, steps=1, sample_steps=3, reps=3, warmup=1, respacing=20, quality_batch=2,
        max_run_s=2.0, num_defect=4,
    ),
    "shipped": dict(
        large="configs/large.yaml", small="configs/small.yaml", train_batch=4,
        sample_batch=8, steps=3, sample_steps=3, reps=3, warmup=1, respacing=50, quality_batch=2,
        max_run_s=30.0, num_defect=5,
    ),
}  # fmt: skip
# Dense bf16/fp16 (measured on the device), TF32 and fp32 (the H100 SXM specification) FLOP/s. The fp32
# modes' convolutions run in TF32 whenever cuDNN allows it (PyTorch's default), so their MFU is taken
# against the TF32 peak then: against 67 TFLOP/s they read above 100%.
HOPPER_PEAK = {"half": 790e12, "tf32": 495e12, "fp32": 67e12}
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Mode:
    """One way to run the models; the defaults are the reference (the release's way)."""

    name: str
    attention: str = "math"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    fused: bool = False
    checkpoint: bool = False


def all_modes(device, compile_on):
    """Give the modes to compare on `device`, reference first, combined last."""
    cuda = device.type == "cuda"
    fused = fused_adamw_works(device)
    modes = [
        Mode("reference"),
        Mode("sdpa", attention="sdpa"),
        Mode("bf16", precision="bf16"),
        Mode("fp16", precision="fp16") if cuda else None,
        Mode("channels_last", channels_last=True),
        Mode("compile", compile=True) if compile_on else None,
        Mode("fused_adamw", fused=True) if fused else None,
        Mode("checkpoint", checkpoint=True),
        Mode(
            "combined", attention="sdpa", precision="bf16", channels_last=True, compile=compile_on,
            fused=fused,
        ),
    ]  # fmt: skip
    return [m for m in modes if m is not None]


def describe(mode):
    """Give the options of a mode in words."""
    words = [
        mode.precision,
        f"{mode.attention} attention",
        "channels_last" if mode.channels_last else "NCHW",
    ]
    words += ["torch.compile"] * mode.compile + ["fused AdamW"] * mode.fused
    return ", ".join(words + ["gradient checkpointing"] * mode.checkpoint)


def applies(mode, kind, model_name=None):
    """Tell whether `mode` changes anything for a measurement of `kind` ("train" or "sample")."""
    if mode.name in ("fused_adamw", "checkpoint") and kind != "train":
        return False
    return not (mode.name == "sdpa" and model_name == "small")  # the small model has no attention


def fused_adamw_works(device):
    """Tell whether torch.optim.AdamW(fused=True) runs on `device` in this torch."""
    try:
        p = torch.nn.Parameter(torch.zeros(2, device=device))
        opt = torch.optim.AdamW([p], fused=True)
        p.grad = torch.ones_like(p)
        opt.step()
        return True
    except (RuntimeError, TypeError):
        return False


# -------------------------------------------------------------------------------------------------
# Memory, timing, peaks


class PeakMemory:
    """Peak memory between start() and stop(), in bytes above the level at start(), or None."""

    def __init__(self, device):
        self.device = device
        self.base = None

    def start(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        with contextlib.suppress(OSError, AttributeError):
            # Hand freed heap back to the system, so that a later growth shows again.
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current resident set size
            self.base = _proc_status_kb("VmRSS") * 1024
        except OSError:
            self.base = None
        return self

    def stop(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        if self.base is None:
            return None
        return max(_proc_status_kb("VmHWM") * 1024 - self.base, 0)


def _proc_status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn, device):
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def time_in_turns(fns, device, reps):
    """
    Give {key: median seconds} of runs of each fn, run in turns, every other round in reverse order.

    :param reps: {key: number of runs}.
    """
    keys = list(fns)
    times = {k: [] for k in keys}
    for r in range(max(reps.values(), default=0)):
        for k in keys if r % 2 == 0 else keys[::-1]:
            if r < reps[k]:
                times[k].append(time_once(fns[k], device))
    return {k: statistics.median(v) for k, v in times.items() if v}


def cpu_peak_flops(n=1536, reps=4):
    """Give the best fp32 FLOP/s of an n x n matmul on the CPU with torch's threads (our 'peak')."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(time_once(lambda: a @ b, torch.device("cpu")) for _ in range(reps))
    return 2 * n**3 / best


def choose_cpu_threads(forward, max_threads):
    """
    Give (threads, {threads: seconds}): 1 or `max_threads` intra-op threads, whichever runs
    `forward` faster.

    On a shared, loaded CPU, several OpenMP threads wait for each other and can be many times slower
    than one; on an idle machine more threads win.
    """
    seconds = {}
    for n in sorted({1, max_threads}):
        torch.set_num_threads(n)
        forward()
        seconds[n] = min(time_once(forward, torch.device("cpu")) for _ in range(3))
    best = min(seconds, key=seconds.get)
    torch.set_num_threads(best)
    return best, seconds


def peak_flops(device, precision, args, cpu_peak):
    """Give the peak FLOP/s MFU is measured against, or None when unknown."""
    half = precision in ("bf16", "fp16")
    given = args.peak_tflops_half if half else args.peak_tflops_fp32
    if given:
        return given * 1e12
    if device.type == "cpu":
        return cpu_peak
    name = torch.cuda.get_device_name(device)
    if "H100" in name or "H200" in name:
        if half:
            return HOPPER_PEAK["half"]
        return HOPPER_PEAK["tf32" if torch.backends.cudnn.allow_tf32 else "fp32"]
    return None


# -------------------------------------------------------------------------------------------------
# Models and data


class Bench:
    """The configs, the weights (one set per model, shared by every mode) and the FLOP counts."""

    def __init__(self, args, device):
        self.args = args
        self.device = device
        preset = PRESETS[args.preset]
        self.cfgs = {
            name: load_config(str(REPO / preset[name]), num_defect=preset["num_defect"])
            for name in ("large", "small")
        }
        params = [self.cfgs[n]["model"]["params"] for n in ("large", "small")]
        res = [self.cfgs[n]["data"]["params"]["resolution"] for n in ("large", "small")]
        if params[0]["in_channels"] != params[1]["in_channels"] or res[0] != res[1]:
            raise ConfigError(
                f"{preset['large']} and {preset['small']}: channels or resolution differ"
            )
        self.channels, self.resolution = params[0]["in_channels"], res[0]
        self.diffusion = build_diffusion(self.cfgs["large"])
        self._states = {}
        shape = (1, self.channels, self.resolution, self.resolution)
        self.flops = {}
        for name in ("large", "small"):
            with torch.device("meta"):
                model = build_model(self._cfg(name, Mode("reference")))
            self.flops[name] = {
                "forward": flops_per_forward(model, shape),
                "train": flops_per_train_step(model, shape),
            }

    def state(self, name):
        """Give the weights of the `name` model: random, zero-initialised layers redrawn."""
        if name not in self._states:
            torch.manual_seed(0 if name == "large" else 1)
            model = build_model(self._cfg(name, Mode("reference")))
            gen = torch.Generator().manual_seed(10 if name == "large" else 11)
            randomize_zero_parameters_(model, std=0.02, generator=gen)
            self._states[name] = model.state_dict()
        return self._states[name]

    def _cfg(self, name, mode):
        cfg = copy.deepcopy(self.cfgs[name])
        cfg["model"]["params"]["attention_backend"] = mode.attention
        cfg["model"]["params"]["use_checkpoint"] = mode.checkpoint
        return cfg

    def model(self, name, mode):
        """Give the `name` model on the device, set up for `mode`, with the shared weights."""
        with torch.device("meta"):
            model = build_model(self._cfg(name, mode))
        state = {k: v.to(self.device, copy=True) for k, v in self.state(name).items()}
        model.load_state_dict(state, strict=True, assign=True)
        if mode.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def layout(self, x, mode):
        """Give `x` in the memory format of `mode`."""
        return x.contiguous(memory_format=torch.channels_last) if mode.channels_last else x

    def batch(self, n, generator):
        """Give a random training batch [n x C x H x W] in the channel layout, on the device."""
        num_defect = num_defect_from_channels(self.channels)
        rgb = torch.rand(n, 3, self.resolution, self.resolution, generator=generator) * 2 - 1
        index = torch.randint(
            0, num_defect + 1, (n, self.resolution, self.resolution), generator=generator
        )
        return torch.cat([rgb, encode(index, num_defect)], dim=1).to(self.device)

    def sample_flops(self, respacing):
        """Give the forward FLOPs of one two-stage sample with `respacing` (None: all T steps)."""
        large, small = stage_timesteps(self.diffusion.num_timesteps, self.args.switch, respacing)
        return (
            len(large) * self.flops["large"]["forward"]
            + len(small) * self.flops["small"]["forward"]
        )


def compiled(model, mode):
    return torch.compile(model) if mode.compile else model


class TrainRunner:
    """
    `steps` training steps of one model in one mode, built and warmed up at once (peak memory
    taken).

    `estimate_s` is the time of one run, from the warm-up.
    """

    def __init__(self, bench, name, mode, batch):
        args, device = bench.args, bench.device
        memory = PeakMemory(device).start()
        self.model = bench.model(name, mode).train()
        forward = compiled(self.model, mode)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=1e-4, weight_decay=0.002, fused=mode.fused
        )
        scaler = torch.amp.GradScaler(device.type, enabled=mode.precision == "fp16")
        gen = torch.Generator().manual_seed(0)
        x = bench.layout(bench.batch(batch, gen), mode)
        t = torch.randint(0, bench.diffusion.num_timesteps, (batch,), generator=gen).to(device)
        noise = bench.layout(torch.randn(x.shape, generator=gen).to(device), mode)
        dtype = AUTOCAST[mode.precision]

        def run():
            for _ in range(args.steps):
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = bench.diffusion.training_losses(forward, x, t, noise)["loss"].mean()
                self.opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(self.opt)
                scaler.update()
            self.opt.zero_grad(set_to_none=True)  # free the gradients while other modes run

        self.parts = {"train": run}
        # A compiled model compiles in its first run: one more warm-up run gives the estimate.
        warm = [time_once(run, device) for _ in range(args.warmup + mode.compile)]
        self.warmup_s = sum(warm)
        self.estimate_s = {"train": warm[-1]}
        self.peak = memory.stop()


class SampleRunner:
    """
    Two-stage sampling in one mode, built and warmed up at once (peak memory taken).

    `parts`: the large model alone and the small model alone on `sample_steps` steps each (for the
    extrapolation to all T steps) and the real respaced run. `estimate_s` is the time of one run of
    each, from the warm-up.
    """

    def __init__(self, bench, mode, batch):
        args, device, diffusion = bench.args, bench.device, bench.diffusion
        memory = PeakMemory(device).start()
        self.large = compiled(bench.model("large", mode).eval(), mode)
        self.small = compiled(bench.model("small", mode).eval(), mode)
        shape = (batch, bench.channels, bench.resolution, bench.resolution)
        noise = bench.layout(
            per_sample_randn(shape, torch.Generator().manual_seed(0), device), mode
        )
        dtype = AUTOCAST[mode.precision]

        def run(switch_t, respacing):
            return lambda: sample_two_stage(
                diffusion, self.large, self.small, shape, switch_t, timestep_respacing=respacing,
                noise=noise, autocast_dtype=dtype,
            )  # fmt: skip

        T = diffusion.num_timesteps
        self.parts = {
            "large": run(0, str(args.sample_steps)),
            "small": run(T, str(args.sample_steps)),
            "respaced": run(args.switch, str(args.respacing)),
        }
        # The respaced run calls the same models on the same shapes: it needs no warm-up of its own.
        warm = {"large": [], "small": []}
        for _ in range(args.warmup + mode.compile):
            for part, times in warm.items():
                times.append(time_once(self.parts[part], device))
        self.warmup_s = sum(sum(v) for v in warm.values())
        self.estimate_s = {part: times[-1] for part, times in warm.items()}
        self.estimate_s["respaced"] = respaced_seconds(bench, self.estimate_s)
        self.peak = memory.stop()


def respaced_seconds(bench, part_seconds):
    """Give the time of the respaced run from the times of `sample_steps` steps of each model."""
    args = bench.args
    large, small = stage_timesteps(bench.diffusion.num_timesteps, args.switch, str(args.respacing))
    total = len(large) * part_seconds["large"] + len(small) * part_seconds["small"]
    return total / args.sample_steps


# -------------------------------------------------------------------------------------------------
# Measurements and report


def fmt_bytes(n):
    if n is None:
        return "n/a"
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def report_line(rec):
    mfu = f"MFU {100 * rec['mfu']:.2f}%" if rec.get("mfu") is not None else "MFU n/a"
    notes = []
    if rec["options"]["compile"]:
        notes.append(f"warm-up incl. compile {rec['warmup_s']:.0f} s")
    if rec.get("extrapolated"):
        notes.append("slow: extrapolated from per-step times")
    elif rec["reduced_reps"]:
        notes.append(f"slow: {rec['reps']} rep")
    note = f"  ({'; '.join(notes)})" if notes else ""
    speed = f"{rec['img_s']:9.3f} img/s  x{rec['ratio']:.2f} vs reference"
    memory = f"peak {fmt_bytes(rec['peak']):>8}"
    return f"{rec['measurement']:<29} {rec['mode']:<14} {speed}  {memory}  {mfu}{note}"


def build_and_time(make, modes, label, args, device, emit):
    """
    Give ({mode name: runner}, {(mode name, part): median seconds}).

    Runners are built (and warmed up) one by one, then timed in turns. A part whose warm-up run took
    longer than --max-run-s is timed once; a respaced run predicted to take longer is not run at all
    (the caller extrapolates it). A mode whose runner fails to build is reported and left out.
    """
    runners = {}
    for mode in modes:
        try:
            runners[mode.name] = make(mode)
        except Exception as exc:  # e.g. no compiler for torch.compile: report it, go on
            emit(f"{label:<29} {mode.name:<14} failed: {_first_line(exc)}")
    fns, reps = {}, {}
    for name, runner in runners.items():
        for part, fn in runner.parts.items():
            estimate = runner.estimate_s[part]
            if part == "respaced" and estimate > args.max_run_s:
                continue
            fns[(name, part)] = fn
            reps[(name, part)] = args.reps if estimate <= args.max_run_s else 1
    return runners, time_in_turns(fns, device, reps), reps


def run_measurements(bench, modes, cpu_peak, emit):
    """Measure every applicable (measurement, mode); give the records."""
    args, device = bench.args, bench.device
    records = []

    def record(label, mode, img_s, runner, flops, reps, extrapolated=False):
        ref = next(
            (r for r in records if r["measurement"] == label and r["mode"] == "reference"), None
        )
        peak = peak_flops(device, mode.precision, args, cpu_peak)
        rec = dict(
            measurement=label, mode=mode.name, options=asdict(mode), img_s=img_s, peak=runner.peak,
            warmup_s=runner.warmup_s, reps=reps, reduced_reps=reps < args.reps,
            extrapolated=extrapolated, ratio=img_s / ref["img_s"] if ref else 1.0,
            mfu=img_s * flops / peak if peak else None,
        )  # fmt: skip
        records.append(rec)
        emit(report_line(rec), rec)

    for name in ("large", "small"):
        label = f"{name} train (batch {args.train_batch})"
        todo = [m for m in modes if applies(m, "train", name)]
        make = functools.partial(TrainRunner, bench, name, batch=args.train_batch)
        runners, seconds, reps = build_and_time(make, todo, label, args, device, emit)
        for mode in (m for m in todo if m.name in runners):
            key = (mode.name, "train")
            img_s = args.steps * args.train_batch / seconds[key]
            record(label, mode, img_s, runners[mode.name], bench.flops[name]["train"], reps[key])
        del runners
        gc.collect()

    T = bench.diffusion.num_timesteps
    full_label = f"sample {T} steps* (batch {args.sample_batch})"
    resp_label = f"sample {args.respacing} steps (batch {args.sample_batch})"
    todo = [m for m in modes if applies(m, "sample")]
    make = functools.partial(SampleRunner, bench, batch=args.sample_batch)
    runners, seconds, reps = build_and_time(make, todo, "sample", args, device, emit)
    full_large, full_small = (len(s) for s in stage_timesteps(T, args.switch, None))
    flops = {
        full_label: bench.sample_flops(None),
        resp_label: bench.sample_flops(str(args.respacing)),
    }
    for label in (full_label, resp_label):
        for mode in (m for m in todo if m.name in runners):
            parts = {p: seconds[(mode.name, p)] for p in ("large", "small")}
            n = min(reps[(mode.name, p)] for p in ("large", "small"))
            extrapolated = False
            if label == full_label:
                total = full_large * parts["large"] + full_small * parts["small"]
                total /= args.sample_steps
            elif (mode.name, "respaced") in seconds:
                total, n = seconds[(mode.name, "respaced")], reps[(mode.name, "respaced")]
            else:
                total, extrapolated = respaced_seconds(bench, parts), True
            img_s = args.sample_batch / total
            record(label, mode, img_s, runners[mode.name], flops[label], n, extrapolated)
    return records


def quality_guard(bench, emit):
    """Compare a two-stage sample in reduced precision with fp32 from the same weights and noise."""
    args, device = bench.args, bench.device
    mode = Mode("quality", attention="sdpa")
    large = bench.model("large", mode).eval()
    small = bench.model("small", mode).eval()
    shape = (args.quality_batch, bench.channels, bench.resolution, bench.resolution)
    noise = per_sample_randn(shape, torch.Generator().manual_seed(1), device)
    full = args.quality_steps == bench.diffusion.num_timesteps
    respacing = None if full else str(args.quality_steps)
    setting = (
        f"two-stage, {args.quality_steps} steps{'' if full else ' respaced'}, batch {shape[0]}, "
        f"switch {args.switch}, sdpa, same weights and noise"
    )

    def sample(dtype):
        return sample_two_stage(
            bench.diffusion, large, small, shape, args.switch, timestep_respacing=respacing,
            noise=noise, autocast_dtype=dtype,
        ).float()  # fmt: skip

    ref = sample(None)
    top2 = ref[:, 3:].topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]  # how far the fp32 sample's class is from the runner-up
    confident = margin > 0.1
    results = {}
    for precision in ("bf16", "fp16") if device.type == "cuda" else ("bf16",):
        out = sample(AUTOCAST[precision])
        rgb = (out[:, :3] - ref[:, :3]).abs()
        mask = (out[:, 3:] - ref[:, 3:]).abs()
        differs = decode(out) != decode(ref)
        flipped = differs.float().mean().item()
        flipped_confident = differs[confident].float().mean().item() if confident.any() else 0.0
        res = dict(
            image_max_abs=rgb.max().item(), image_mean_abs=rgb.mean().item(),
            mask_channels_max_abs=mask.max().item(), mask_channels_mean_abs=mask.mean().item(),
            mask_pixels_class_differs=flipped, fp32_margin_median=margin.median().item(),
            confident_share=confident.float().mean().item(),
            confident_pixels_class_differs=flipped_confident, steps=args.quality_steps,
            batch=shape[0],
        )  # fmt: skip
        results[precision] = res
        emit(
            f"quality {precision} vs fp32 ({setting}): image |diff| max {res['image_max_abs']:.4f} "
            f"mean {res['image_mean_abs']:.5f}; mask channels |diff| max "
            f"{res['mask_channels_max_abs']:.4f} mean {res['mask_channels_mean_abs']:.5f}; "
            f"mask pixels of another class {100 * flipped:.3f}% (fp32 top-2 margin: median "
            f"{res['fp32_margin_median']:.3f}; of the {100 * res['confident_share']:.1f}% pixels "
            f"with margin > 0.1, {100 * flipped_confident:.3f}% change class)"
        )
    return results


def summarize(records, emit):
    """
    Emit the fastest mode per measurement and each option's mean effect.

    :return: (fastest per measurement, mean ratio per mode, overall speedup).
    """
    by_measurement = {}
    for rec in records:
        by_measurement.setdefault(rec["measurement"], []).append(rec)
    emit("defaults chosen by measurement (fastest mode per measurement):")
    fastest = {}
    for label, recs in by_measurement.items():
        best = max(recs, key=lambda r: r["img_s"])
        fastest[label] = {"mode": best["mode"], "ratio": best["ratio"]}
        emit(f"  {label:<34} fastest: {best['mode']:<14} x{best['ratio']:.2f}")
    emit("each option alone (geometric mean of its ratios to the reference; within 3%: no change):")
    options = {}
    for mode in dict.fromkeys(r["mode"] for r in records if r["mode"] != "reference"):
        gm = options[mode] = geometric_mean([r["ratio"] for r in records if r["mode"] == mode])
        verdict = "faster" if gm > 1.03 else "slower" if gm < 0.97 else "no change"
        count = sum(r["mode"] == mode for r in records)
        emit(f"  {mode:<14} x{gm:.2f} over {count} measurement(s): {verdict}")
    overall = geometric_mean([f["ratio"] for f in fastest.values()]) if fastest else 1.0
    return fastest, options, overall


def geometric_mean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _first_line(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:200]


# -------------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("--preset", choices=tuple(PRESETS), default="tiny")
    add("--device", choices=("cpu", "cuda"), default="cpu")
    add("--batch", type=int, help="training and sampling batch (default: the preset's)")
    add("--steps", type=int, help="timed training steps per repetition")
    add("--sample-steps", type=int, help="timed denoising steps of each model per repetition")
    add("--reps", type=int, help="timed repetitions per mode (the median is reported)")
    add("--warmup", type=int, help="untimed warm-up repetitions (at least 1)")
    add("--respacing", type=int, help="steps of the real, respaced sampling run")
    add(
        "--max-run-s",
        type=float,
        help="a run slower than this (in the warm-up) is timed once; a respaced sampling run "
        "predicted slower is extrapolated from per-step times (default: tiny 2, shipped 30)",
    )
    add("--switch", type=int, default=400, help="switch S: large model for t >= S (400)")
    add("--modes", nargs="+", help="modes besides the reference (default: all that apply)")
    add(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the torch.compile modes (default: on CUDA only; it takes minutes on a CPU)",
    )
    add(
        "--quality",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 (and fp16 on CUDA) vs fp32 two-stage samples from the same weights and noise "
        "(default: on CUDA only; bf16 convolutions are slow on CPUs without native bf16)",
    )
    add("--quality-steps", type=int, default=100, help="sampling steps of the quality guard")
    add("--threads", type=int, help="CPU threads (default: 1 or all, the faster in a probe)")
    add("--peak-tflops-fp32", type=float, help="fp32 peak for the MFU (default: see above)")
    add("--peak-tflops-half", type=float, help="bf16/fp16 peak for the MFU")
    add("--flops-only", action="store_true", help="print the FLOP counts and stop")
    add("--json", help="write every result to this JSON file (updated after each line)")
    args = p.parse_args(argv)  # fmt: skip
    preset = PRESETS[args.preset]
    args.train_batch = args.batch or preset["train_batch"]
    args.steps = args.steps or preset["steps"]
    args.sample_steps = args.sample_steps or preset["sample_steps"]
    args.reps = args.reps or preset["reps"]
    args.warmup = preset["warmup"] if args.warmup is None else args.warmup
    args.respacing = args.respacing or preset["respacing"]
    args.quality_batch = preset["quality_batch"]
    args.max_run_s = args.max_run_s or preset["max_run_s"]
    counts = [args.train_batch, args.steps, args.sample_steps, args.reps, args.respacing]
    if min(counts + [args.warmup, args.quality_steps]) < 1:
        p.error(
            "--batch, --steps, --sample-steps, --reps, --warmup, --respacing, --quality-steps: >= 1"
        )
    if not 0 <= args.switch <= 1000:
        p.error("--switch must lie in 0..1000")
    return args


def device_setup(bench, args, device):
    """Set the CPU threads; give (device, settings, suggested batch, CPU peak FLOP/s or None)."""
    shape = (bench.channels, bench.resolution, bench.resolution)
    default_batch = PRESETS[args.preset]["sample_batch"]
    if device.type == "cuda":
        probe = bench.model("small", Mode("reference")).eval()
        suggested = suggest_batch_size(probe, shape, device)
        del probe
        args.sample_batch = args.batch or min(default_batch, suggested)
        where = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
        settings = (
            f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32 "
            f"{torch.backends.cudnn.allow_tf32}, cuDNN benchmark {torch.backends.cudnn.benchmark}"
        )
        return where, settings, suggested, None
    suggested = suggest_batch_size(None, shape, device, cpu_default=default_batch)
    args.sample_batch = args.batch or suggested
    where = f"CPU {platform.machine()}, {os.cpu_count()} cores"
    if args.threads:
        torch.set_num_threads(args.threads)
        settings = f"{args.threads} threads (--threads)"
    else:
        probe = bench.model("large", Mode("reference")).eval()
        x = torch.randn(args.sample_batch, *shape)
        t = torch.zeros(args.sample_batch, dtype=torch.long)
        with torch.no_grad():
            threads, probe_s = choose_cpu_threads(lambda: probe(x, t), torch.get_num_threads())
        times = ", ".join(f"{n} thread(s) {s:.3f}" for n, s in probe_s.items())
        settings = f"{threads} thread(s), the faster in a probe (s per large forward: {times})"
    return where, settings, suggested, cpu_peak_flops()


def fmt_flops(n):
    return f"{n / 1e12:.2f} TFLOP" if n >= 1e12 else f"{n / 1e9:.2f} GFLOP"


def flops_line(bench):
    fl, args = bench.flops, bench.args
    large, small = (fl[n]["forward"] / 1e9 for n in ("large", "small"))
    forward = f"forward large {large:.3f}, small {small:.3f}"
    large, small = (fl[n]["train"] / 1e9 for n in ("large", "small"))
    train = f"large {large:.3f}, small {small:.3f}"
    T, full = bench.diffusion.num_timesteps, fmt_flops(bench.sample_flops(None))
    respaced = fmt_flops(bench.sample_flops(str(args.respacing)))
    return (
        f"# {bench.channels} channels, {bench.resolution} px; GFLOP per image (FlopCounterMode): "
        f"{forward}; train step (forward + backward) {train}; one two-stage sample, switch "
        f"{args.switch}: all {T} steps {full}, {args.respacing} respaced steps {respaced}"
    )


def header_lines(bench, args, where, settings, suggested, cpu_peak, combined, compile_on):
    load = os.getloadavg()
    if cpu_peak:
        peak = f"{cpu_peak / 1e9:.1f} GFLOP/s, a timed 1536^3 fp32 matmul here (for every mode)"
    else:
        fp32 = "495 TFLOP/s TF32" if torch.backends.cudnn.allow_tf32 else "67 TFLOP/s fp32"
        peak = f"790 TFLOP/s bf16/fp16 dense, {fp32} for fp32 modes (H100/H200), or --peak-tflops-*"
    T = bench.diffusion.num_timesteps
    return [
        f"# device: {where}; torch {torch.__version__}; {settings}",
        f"# load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)",
        flops_line(bench),
        f"# MFU peak: {peak}",
        f"# timing: modes in turns, median of {args.reps} reps after {args.warmup} warm-up, "
        f"{args.steps} training step(s) per rep, runs over {args.max_run_s:g} s timed once; "
        f"sampling batch {args.sample_batch} (suggest_batch_size: {suggested}), switch "
        f"{args.switch}; *all {T} steps extrapolated from {args.sample_steps} timed step(s) of "
        "each model per rep",
        "# reference: fp32, math attention, NCHW, eager, AdamW not fused, no checkpointing; "
        f"combined: {describe(combined)}; torch.compile modes "
        f"{'on' if compile_on else 'off (add with --compile)'}",
    ]


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available() and not args.flops_only:
        print("error: --device cuda: this torch sees no CUDA device", file=sys.stderr)
        sys.exit(2)
    compile_on = args.compile if args.compile is not None else device.type == "cuda"
    quality_on = args.quality if args.quality is not None else device.type == "cuda"
    modes = all_modes(device, compile_on)
    combined = modes[-1]
    if args.modes:
        known = {m.name for m in modes}
        unknown = sorted(set(args.modes) - known)
        if unknown:
            choices = ", ".join(sorted(known))
            print(
                f"error: --modes {' '.join(unknown)}: not here; choose from {choices}",
                file=sys.stderr,
            )
            sys.exit(2)
        modes = [m for m in modes if m.name == "reference" or m.name in args.modes]
    if compile_on:  # one compiled graph per model instance and mode: keep them all
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    started = time.perf_counter()
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    command = f"python benchmarks/bench.py {argv_text}".strip()
    results = {"command": command, "lines": [], "records": []}

    def emit(line, rec=None):
        print(line, flush=True)
        results["lines"].append(line)
        if rec is not None:
            results["records"].append(rec)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))

    try:
        bench = Bench(args, device)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    results["flops"] = bench.flops
    if args.flops_only:
        emit(flops_line(bench))
        return
    where, settings, suggested, cpu_peak = device_setup(bench, args, device)
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    results.update(date=date, device=where, torch=torch.__version__, load_start=os.getloadavg())
    emit(f"# {command}   {date}")
    for line in header_lines(
        bench, args, where, settings, suggested, cpu_peak, combined, compile_on
    ):
        emit(line)

    records = run_measurements(bench, modes, cpu_peak, emit)
    if quality_on:
        results["quality"] = quality_guard(bench, emit)
    else:
        emit("# quality guard off (add with --quality; on by default on CUDA)")
    fastest, options, overall = summarize(records, emit)
    end = os.getloadavg()
    total = time.perf_counter() - started
    emit(f"# total {total:.0f} s; load average at end: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    results.update(fastest=fastest, option_ratios=options, overall_speedup=overall, load_end=end)
    emit(f"overall speedup: {overall:.2f}x")


if __name__ == "__main__":
    main()
