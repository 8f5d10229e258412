"""
Generation of a sample folder from a large and a small checkpoint: loading, compatibility checks,
per-sample seeding, resumable writing, the manifest and mask statistics.

A sample folder (see docs/ARCHITECTURE.md, "sample folder"):

    images/NNNNNN.png      RGB
    masks/NNNNNN.png       8-bit class-index map, 0 = background
    masks_rgb/NNNNNN.png   the mask in palette colours
    grid.png               the first (up to 64) images with their masks overlaid
    manifest.json          checkpoints, switch, sampler, steps, seed, version, timing

Sample i is drawn from its own generator seeded with `seed + i` (x_T and any sampler noise), so its content
depends neither on the batch it shares nor on the number of processes. A sample is complete when its three
files exist and decode; re-running a command generates only the incomplete ones. The manifest is written
before the first sample and holds the generation parameters, so a folder never mixes samples of two
different settings.
"""

import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import blobfile as bf
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from . import __version__, folders
from .checkpoints import resolve_checkpoint
from .conditioning import known_generator
from .config import ConfigError, build_diffusion, build_model, model_kind, read_yaml, resolve
from .fileio import CheckpointError, atomic_write_bytes, atomic_write_text, load_torch
from .masks import colorize, decode, make_grid, num_channels, overlay, split, to_uint8_rgb
from .precision import AUTOCAST_DTYPES
from .respace import sampling_timesteps
from .two_stage import sample_two_stage, stage_timesteps

logger = logging.getLogger(__name__)

SAMPLERS = ("cold", "ddim", "ddpm")
SUBDIRS = ("images", "masks", "masks_rgb")
MANIFEST = "manifest.json"
GRID = "grid.png"
GRID_MAX_SAMPLES = 64
GRID_COLUMNS = 8  # tiles: 4 (image, overlay) pairs
GRID_MIN_TILE = 96  # px; smaller samples are enlarged in the grid
MANIFEST_FORMAT = "defect-gen-samples/1"

# switch-sweep figure layout (pixels)
SWEEP_MIN_CELL = 96  # tiles are enlarged by an integer factor to at least this side, so labels fit
SWEEP_PAD = 2
SWEEP_TOP = 30  # two lines of column labels
SWEEP_LEFT = 48  # row labels


class SampleFolderError(ConfigError):
    """A sample folder that cannot take this run's samples; the message names the folder or file."""


# --------------------------------------------------------------------------------------------------
# Models


@dataclass
class LoadedModel:
    """A model ready for sampling, with what its checkpoint says about it."""

    path: str
    kind: str  # "large" or "small"
    model: torch.nn.Module
    cfg: dict  # the resolved config (from the checkpoint, or from the YAML for release checkpoints)
    config_source: str  # where cfg came from
    step: Optional[int]
    classes: Optional[list]
    data_stats: Optional[dict]
    weights: str  # "ema" or "model"
    num_bytes: Optional[int]

    @property
    def channels(self):
        """The model's in/out channel count (num_defect + 4)."""
        return self.cfg["model"]["params"]["in_channels"]

    @property
    def num_defect(self):
        """The number of defect classes K."""
        return self.cfg["data"]["params"]["num_defect"]

    @property
    def resolution(self):
        """The side in pixels of the training images."""
        return self.cfg["data"]["params"]["resolution"]

    @property
    def diffusion_params(self):
        """The config's diffusion.params: schedule, parameterization, num_timestep."""
        return self.cfg["diffusion"]["params"]


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _state_dict_mismatch(model, state):
    """Give a short description of how `state` differs from `model`'s state_dict, or "" if it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and torch.is_tensor(state[k]) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[0]} (checkpoint vs model)")
    return "; ".join(parts)


def load_model(path, kind, *, config_path=None, use_ema=True, device="cpu"):
    """
    Give a LoadedModel: the checkpoint's EMA (or raw) weights in the model its config describes, in eval mode.

    Our checkpoints carry their config; the release's (`{model, ema, optimizer}` only) need `config_path`,
    its YAML. Weights load with ``strict=True``.

    :param path: a checkpoint file, a `checkpoints/latest` pointer or a run folder.
    :param kind: "large" or "small": what the caller uses the model as; another kind is an error.
    :raises CheckpointError, ConfigError: naming the file and the problem.
    """
    path = resolve_checkpoint(path)
    flag = f"--{kind}_recep"
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: holds no 'model' state_dict: not a Defect-Gen checkpoint")
    if ckpt.get("config") is not None:
        cfg = resolve(ckpt["config"], path)
        source = path
        if config_path is not None:
            given = resolve(read_yaml(config_path), str(config_path))
            if given["model"] != cfg["model"]:
                logger.warning(
                    "%s carries its own config; %s describes another model and is ignored",
                    path, config_path,
                )  # fmt: skip
    elif config_path is None:
        raise CheckpointError(
            f"{path}: the checkpoint holds no config (the release's format): pass its YAML with "
            f"{flag}_config"
        )
    else:
        cfg = resolve(read_yaml(config_path), str(config_path))
        source = str(config_path)

    actual = model_kind(cfg)
    if actual != kind:
        raise CheckpointError(
            f"{path}: holds a {actual} model ({cfg['model']['target']}, per {source}) but was given "
            f"as {flag}; pass it as --{actual}_recep"
        )
    key = "ema" if use_ema else "model"
    state = ckpt.get(key)
    if not isinstance(state, dict):
        hint = "; pass --use_ema false to use the raw weights" if use_ema else ""
        raise CheckpointError(f"{path}: holds no '{key}' weights{hint}")
    model = build_model(cfg)
    problem = _state_dict_mismatch(model, state)
    if problem:
        raise CheckpointError(
            f"{path}: its '{key}' weights do not fit the model of {source}: {problem}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: cannot load its '{key}' weights ({_first_line(exc)})"
        ) from None
    model.to(device).eval().requires_grad_(False)
    try:
        num_bytes = int(bf.stat(path).size)
    except (OSError, AttributeError):
        num_bytes = None
    step = ckpt.get("step")
    return LoadedModel(
        path=path, kind=kind, model=model, cfg=cfg, config_source=source,
        step=int(step) if step is not None else None, classes=ckpt.get("classes"),
        data_stats=ckpt.get("data_stats"), weights=key, num_bytes=num_bytes,
    )  # fmt: skip


@dataclass
class ModelPair:
    """A large and a small model that fit together, with their common settings."""

    large: LoadedModel
    small: LoadedModel
    diffusion: object  # GaussianDiffusion
    num_defect: int
    resolution: int
    classes: list

    @property
    def channels(self):
        """The in/out channel count both models share."""
        return self.large.channels

    @property
    def num_timesteps(self):
        """T, the number of diffusion steps."""
        return self.diffusion.num_timesteps


def check_compatible(large, small, *, num_defect=None):
    """
    Raise unless the two models can share one sampling loop (and fit `num_defect` when given).

    They must agree on channels, num_defect, class names (when both checkpoints name them) and the
    diffusion's schedule, parameterization and number of timesteps.
    """
    diffs = []
    pairs = [
        ("in/out channels", large.channels, small.channels),
        ("num_defect", large.num_defect, small.num_defect),
    ]
    for key in ("schedule", "parameterization", "num_timestep", "mask_mode"):
        pairs.append((f"diffusion {key}", large.diffusion_params[key], small.diffusion_params[key]))
    if large.diffusion_params["mask_mode"] == "consistent":  # logits or x0 mask outputs: must agree
        loss = [m.cfg["train"]["seperate_channel_loss"] for m in (large, small)]
        pairs.append(("train.seperate_channel_loss", *loss))
    if large.classes and small.classes:
        pairs.append(("classes", list(large.classes), list(small.classes)))
    for name, a, b in pairs:
        if a != b:
            diffs.append(f"{name} {a} vs {b}")
    if diffs:
        raise CheckpointError(
            f"{large.path} (large) and {small.path} (small) do not fit together: {'; '.join(diffs)}"
        )
    if num_defect is not None:
        if num_defect < 1:
            raise ConfigError(f"--num_defect must be at least 1, got {num_defect}")
        need = num_channels(num_defect)
        if need != large.channels:
            raise ConfigError(
                f"--num_defect {num_defect} needs {need} in/out channels (3 RGB + 1 background + "
                f"{num_defect} defect), but {large.path} and {small.path} have {large.channels} "
                f"(num_defect {large.num_defect})"
            )
    if large.num_defect + 1 > 256:
        raise ConfigError(f"{large.path}: {large.num_defect} defect classes do not fit 8-bit masks")


def load_pair(
    large_path, small_path, *, large_config=None, small_config=None, use_ema=True, num_defect=None,
    device="cpu",
):  # fmt: skip
    """Give the ModelPair of two checkpoints after checking that they fit together."""
    large = load_model(
        large_path, "large", config_path=large_config, use_ema=use_ema, device=device
    )
    small = load_model(
        small_path, "small", config_path=small_config, use_ema=use_ema, device=device
    )
    check_compatible(large, small, num_defect=num_defect)
    if small.resolution != large.resolution:
        logger.warning(
            "the small model was trained at %d px, the large one at %d px: sampling at %d px",
            small.resolution, large.resolution, large.resolution,
        )  # fmt: skip
    k = large.num_defect
    classes = list(large.classes or small.classes or [])
    if len(classes) != k:
        classes = [f"class_{i}" for i in range(1, k + 1)]
    return ModelPair(
        large=large, small=small, diffusion=build_diffusion(large.cfg), num_defect=k,
        resolution=large.resolution, classes=classes,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Parameters and the manifest


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
    precision="fp32",
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
    }


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


def manifest_path(sample_dir):
    """Give the path of a sample folder's manifest.json."""
    return bf.join(str(sample_dir), MANIFEST)


def read_manifest(sample_dir):
    """Give the folder's manifest dict, or None when there is none."""
    path = manifest_path(sample_dir)
    if not bf.exists(path):
        return None
    try:
        with bf.BlobFile(path, "r") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SampleFolderError(
            f"{path}: not readable JSON ({_first_line(exc)}); pass --overwrite to regenerate the folder"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("generation"), dict):
        raise SampleFolderError(
            f"{path}: not a Defect-Gen sample manifest; use another --sample_dir or pass --overwrite"
        )
    return manifest


def write_manifest(sample_dir, manifest):
    """Write manifest.json atomically."""
    atomic_write_text(manifest_path(sample_dir), json.dumps(manifest, indent=2) + "\n")


def _has_samples(sample_dir):
    ours, _ = folders.sample_folder_files(sample_dir)
    return any("/" in rel for rel in ours)


def check_folder(sample_dir, params):
    """
    Raise SampleFolderError unless `sample_dir` is new, empty, or holds samples of the same `params`.
    """
    manifest = read_manifest(sample_dir)
    if manifest is None:
        folders.check_no_foreign_files(sample_dir)
        if _has_samples(sample_dir):
            raise SampleFolderError(
                f"{sample_dir}: holds samples but no {MANIFEST}, so their parameters are unknown; use "
                f"another --sample_dir or pass --overwrite"
            )
        return
    old = manifest["generation"]
    new = json.loads(json.dumps(params))
    if old != new:
        keys = sorted(set(old) | set(new))
        diffs = [
            f"{k} {_short(old.get(k))} there vs {_short(new.get(k))} now"
            for k in keys
            if old.get(k) != new.get(k)
        ]
        raise SampleFolderError(
            f"{manifest_path(sample_dir)}: the folder holds samples generated with other parameters "
            f"({'; '.join(diffs)}); use another --sample_dir or pass --overwrite"
        )


def _short(value):
    if isinstance(value, dict) and "path" in value:
        return f"{value['path']}@step{value.get('step')}({value.get('bytes')} bytes, {value.get('weights')})"
    return json.dumps(value)


def clear_folder(sample_dir):
    """
    Remove the files the tool wrote in a folder (for --overwrite): samples by name, grid, manifest,
    files the manifest lists. Refuses (FolderError naming them), removing nothing, if others are there.
    """
    try:
        manifest = read_manifest(sample_dir)
    except SampleFolderError:
        manifest = None  # an unreadable manifest.json is still ours to replace
    return folders.clear_sample_folder(str(sample_dir), manifest)


# --------------------------------------------------------------------------------------------------
# Sample files


def sample_files(sample_dir, index):
    """Give {"images": path, "masks": path, "masks_rgb": path} of sample `index`."""
    return {sub: bf.join(str(sample_dir), sub, f"{index:06d}.png") for sub in SUBDIRS}


def _read_png(path):
    with bf.BlobFile(path, "rb") as f:
        data = f.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def is_complete(sample_dir, index):
    """Tell whether sample `index` has all three files and each decodes."""
    for path in sample_files(sample_dir, index).values():
        if not bf.exists(path):
            return False
        try:
            _read_png(path)
        except (OSError, SyntaxError, ValueError):
            return False
    return True


def missing_indices(sample_dir, indices):
    """Give the indices among `indices` whose samples are not complete, in order."""
    return [i for i in indices if not is_complete(sample_dir, i)]


def _png_bytes(array):
    """Give the PNG encoding of a uint8 [H x W] (grey) or [H x W x 3] (RGB) array."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def to_arrays(x):
    """
    Give (rgb [N x H x W x 3] uint8, index [N x H x W] uint8) of a sampled batch.

    :param x: an [N x (4 + K) x H x W] Tensor in the channel layout.
    """
    rgb, _ = split(x)
    return to_uint8_rgb(rgb), decode(x).cpu().numpy().astype(np.uint8)


def write_samples(sample_dir, indices, x, num_defect):
    """Write images/, masks/ and masks_rgb/ of a sampled batch, each file atomically."""
    images, index_maps = to_arrays(x)
    for i, image, index_map in zip(indices, images, index_maps):
        paths = sample_files(sample_dir, i)
        atomic_write_bytes(paths["images"], _png_bytes(image))
        atomic_write_bytes(paths["masks"], _png_bytes(index_map))
        atomic_write_bytes(paths["masks_rgb"], _png_bytes(colorize(index_map, num_defect + 1)))


def read_sample(sample_dir, index):
    """Give (rgb [H x W x 3] uint8, index map [H x W] uint8) of a written sample."""
    paths = sample_files(sample_dir, index)
    rgb = np.asarray(_read_png(paths["images"]).convert("RGB"))
    return rgb, np.asarray(_read_png(paths["masks"]))


def write_grid(sample_dir, indices, num_defect):
    """Write grid.png: each sample's image next to the image with its mask overlaid, 4 pairs per row."""
    tiles = []
    for i in indices[:GRID_MAX_SAMPLES]:
        rgb, index_map = read_sample(sample_dir, i)
        tiles += [rgb, overlay(rgb, index_map, alpha=0.5, num_classes=num_defect + 1)]
    if tiles:
        grid = make_grid(tiles, ncol=min(GRID_COLUMNS, len(tiles)), min_tile=GRID_MIN_TILE)
        atomic_write_bytes(bf.join(str(sample_dir), GRID), _png_bytes(grid))


def folder_mask_stats(sample_dir, indices, num_defect):
    """
    Give class statistics of the written masks of `indices`, in the training checkpoints' format.

    :return: {"num_images": n, "share_with_class": [K + 1] fraction of masks holding class k,
        "mean_area": [K + 1] mean fraction of a mask's pixels in class k} (entry 0 = background).
    """
    share = np.zeros(num_defect + 1)
    area = np.zeros(num_defect + 1)
    n = 0
    for i in indices:
        index_map = np.asarray(_read_png(sample_files(sample_dir, i)["masks"]))
        counts = np.bincount(index_map.ravel(), minlength=num_defect + 1)[: num_defect + 1]
        share += counts > 0
        area += counts / max(index_map.size, 1)
        n += 1
    n_div = max(n, 1)
    return {
        "num_images": n,
        "share_with_class": (share / n_div).tolist(),
        "mean_area": (area / n_div).tolist(),
    }


def format_stats_table(classes, generated, training=None):
    """
    Give a text table of generated vs training mask statistics per class (background first).

    :param generated, training: dicts as :func:`folder_mask_stats` gives (training may be None).
    """

    def pct(stats, key, k):
        if not stats or key not in stats or k >= len(stats[key]):
            return "-"
        return f"{100 * stats[key][k]:.1f}%"

    names = ["background", *classes]
    width = max(12, *(len(n) for n in names))
    n_gen = generated.get("num_images", "?")
    n_train = training.get("num_images", "?") if training else "-"
    lines = [
        f"{'':{width}}  {'share of masks holding the class':>34}  {'mean area':>22}",
        f"{'class':{width}}  {f'generated ({n_gen})':>16}  {f'training ({n_train})':>16}  "
        f"{'generated':>10}  {'training':>10}",
    ]
    for k, name in enumerate(names):
        lines.append(
            f"{name:{width}}  {pct(generated, 'share_with_class', k):>16}  "
            f"{pct(training, 'share_with_class', k):>16}  {pct(generated, 'mean_area', k):>10}  "
            f"{pct(training, 'mean_area', k):>10}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Generation


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
    """Give sample_two_stage's conditioning arguments for a batch (see defect_gen.conditioning)."""
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


def timing_record(load_s, generate_s, num_generated):
    """Give the manifest's timing entry."""
    return {
        "load_s": round(load_s, 3),
        "generate_s": round(generate_s, 3),
        "samples_generated": num_generated,
        "samples_per_s": round(num_generated / generate_s, 4) if generate_s > 0 else None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def base_manifest(pair, params, *, num_samples, batch_size, world_size, device):
    """Give the manifest written before sampling starts (status "running")."""
    g = params
    return {
        "format": MANIFEST_FORMAT,
        "version": __version__,
        "status": "running",
        "generation": params,
        "num_samples": int(num_samples),
        "seeds": f"sample i is drawn from seed {g['seed']} + i",
        "classes": pair.classes,
        "steps": steps_record(pair.num_timesteps, g["step_inference"], g["timestep_respacing"]),
        "diffusion": dict(pair.large.diffusion_params),
        "batch_size": int(batch_size),
        "world_size": int(world_size),
        "device": str(device),
        "training_data_stats": {"large": pair.large.data_stats, "small": pair.small.data_stats},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------------------------------
# The switch sweep figure


def sweep_figure(tiles, col_labels, row_labels):
    """
    Give a uint8 [H x W x 3] figure: a grid of tiles with a two-line label over each column and one
    left of each row.

    Tiles are enlarged (nearest neighbour) by the smallest integer factor that makes them at least
    SWEEP_MIN_CELL pixels wide. H = SWEEP_TOP + rows * (cell + SWEEP_PAD) + SWEEP_PAD and
    W = SWEEP_LEFT + cols * (cell + SWEEP_PAD) + SWEEP_PAD.

    :param tiles: rows of equally sized [h x w x 3] uint8 arrays (rows x cols).
    :param col_labels: per column, one or two text lines ("\\n"-separated).
    """
    nrow, ncol = len(tiles), len(tiles[0])
    h, w = tiles[0][0].shape[:2]
    scale = max(1, math.ceil(SWEEP_MIN_CELL / min(h, w)))
    ch, cw = h * scale, w * scale
    height = SWEEP_TOP + nrow * (ch + SWEEP_PAD) + SWEEP_PAD
    width = SWEEP_LEFT + ncol * (cw + SWEEP_PAD) + SWEEP_PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for c, label in enumerate(col_labels):
        x = SWEEP_LEFT + SWEEP_PAD + c * (cw + SWEEP_PAD)
        draw.multiline_text((x + 2, 2), label, fill=(0, 0, 0), font=font, spacing=2)
    for r, row in enumerate(tiles):
        y = SWEEP_TOP + SWEEP_PAD + r * (ch + SWEEP_PAD)
        draw.text((2, y + ch // 2 - 6), row_labels[r], fill=(0, 0, 0), font=font)
        for c, tile in enumerate(row):
            x = SWEEP_LEFT + SWEEP_PAD + c * (cw + SWEEP_PAD)
            big = np.kron(tile, np.ones((scale, scale, 1), dtype=np.uint8))
            canvas.paste(Image.fromarray(big), (x, y))
    return np.asarray(canvas)


def sweep_column_label(num_timesteps, switch_t, timestep_respacing):
    """Give the label of a sweep column: the switch and how many steps each model runs."""
    large, small = stage_timesteps(num_timesteps, switch_t, timestep_respacing or None)
    if not small:
        head = f"S={switch_t} large only"
    elif not large:
        head = f"S={switch_t} small only"
    else:
        head = f"S={switch_t}"
    return f"{head}\nL {len(large)} / s {len(small)} steps"


def write_png(path, array):
    """Write a uint8 array as a PNG, atomically."""
    atomic_write_bytes(str(path), _png_bytes(array))
