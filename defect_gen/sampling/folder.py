"""
The sample folder: its files, the manifest, resuming, the grid and the statistics of the written masks.

A sample folder (see docs/ARCHITECTURE.md, "sample folder"):

    images/NNNNNN.png      RGB
    masks/NNNNNN.png       8-bit class-index map, 0 = background
    masks_rgb/NNNNNN.png   the mask in palette colours
    grid.png               the first (up to 64) images with their masks overlaid
    manifest.json          checkpoints, switch, sampler, steps, seed, version, timing

A sample is complete when its three files exist and decode; re-running a command generates only the
incomplete ones. The manifest is written before the first sample and holds the generation parameters
(:meth:`defect_gen.sampling.options.SamplingOptions.to_manifest`), so a folder never mixes samples of two different
settings. Every file is written atomically.
"""

import json
import time

import blobfile as bf
import numpy as np
from PIL import Image

from .. import __version__, lock
from ..data.stats import mask_statistics
from ..errors import SampleFolderError, first_line
from ..fileio import atomic_write_text, read_png, write_png
from ..masks import colorize, make_grid, overlay
from .generate import steps_record, to_arrays

SUBDIRS = ("images", "masks", "masks_rgb")
MANIFEST = "manifest.json"
GRID = "grid.png"
GRID_MAX_SAMPLES = 64
GRID_COLUMNS = 8  # tiles: 4 (image, overlay) pairs
GRID_MIN_TILE = 96  # px; smaller samples are enlarged in the grid
MANIFEST_FORMAT = "defect-gen-samples/1"


# --------------------------------------------------------------------------------------------------
# The manifest


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
            f"{path}: not readable JSON ({first_line(exc)}); pass --overwrite to regenerate the folder"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("generation"), dict):
        raise SampleFolderError(
            f"{path}: not a Defect-Gen sample manifest; use another --sample_dir or pass --overwrite"
        )
    return manifest


def write_manifest(sample_dir, manifest):
    """Write manifest.json atomically."""
    atomic_write_text(manifest_path(sample_dir), json.dumps(manifest, indent=2) + "\n")


def timing_record(load_s, generate_s, num_generated):
    """Give the manifest's timing entry."""
    return {
        "load_s": round(load_s, 3),
        "generate_s": round(generate_s, 3),
        "samples_generated": num_generated,
        "samples_per_s": round(num_generated / generate_s, 4) if generate_s > 0 else None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def base_manifest(pair, options, params, *, num_samples, world_size, device):
    """
    Give the manifest written before sampling starts (status "running").

    :param options: the run's SamplingOptions.
    :param params: the parameters that decide the samples' content: ``options.to_manifest(pair)`` and
        those of the conditioning and selection.
    """
    return {
        "format": MANIFEST_FORMAT,
        "version": __version__,
        "status": "running",
        "generation": params,
        "num_samples": int(num_samples),
        "seeds": f"sample i is drawn from seed {options.seed} + i",
        "classes": pair.classes,
        "steps": steps_record(pair.num_timesteps, options.switch_t, options.timestep_respacing),
        "diffusion": dict(pair.reference.diffusion_params),
        "batch_size": int(options.batch_size),
        "world_size": int(world_size),
        "device": str(device),
        "training_data_stats": {m.kind: m.data_stats for m in pair.models},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _has_samples(sample_dir):
    ours, _ = lock.sample_folder_files(sample_dir)
    return any("/" in rel for rel in ours)


def check_folder(sample_dir, params):
    """
    Raise SampleFolderError unless `sample_dir` is new, empty, or holds samples of the same `params`.
    """
    manifest = read_manifest(sample_dir)
    if manifest is None:
        lock.check_no_foreign_files(sample_dir)
        if _has_samples(sample_dir):
            raise SampleFolderError(
                f"{sample_dir}: holds samples but no {MANIFEST}, so their parameters are unknown; use "
                f"another --sample_dir or pass --overwrite"
            )
        return
    if "selected_from" in manifest:
        raise SampleFolderError(
            f"{manifest_path(sample_dir)}: holds pairs selected from "
            f"{manifest['selected_from'].get('folder')} (scripts/select_pairs.py), not a sampling "
            f"run; use another --sample_dir"
        )
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


def check_sample_count(sample_dir, num_samples):
    """
    Raise SampleFolderError, changing nothing, when `sample_dir` holds samples of an index at or above
    `num_samples`: the manifest of this run would not describe them, yet they would stay.
    """
    ours, _ = lock.sample_folder_files(sample_dir)
    names = [rel.split("/")[1] for rel in ours if "/" in rel]
    indices = sorted({int(n[:-4]) for n in names if lock.SAMPLE_NAME.match(n)})
    beyond = [i for i in indices if i >= num_samples]
    if beyond:
        raise SampleFolderError(
            f"{sample_dir}: holds {len(indices)} samples (indices up to {indices[-1]}) but "
            f"--num_samples {num_samples} asks for {num_samples}; the samples from index "
            f"{num_samples} on would stay undescribed: pass --num_samples {indices[-1] + 1} or more, "
            f"use another --sample_dir, or pass --overwrite"
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
    return lock.clear_sample_folder(str(sample_dir), manifest)


# --------------------------------------------------------------------------------------------------
# Sample files


def sample_files(sample_dir, index):
    """Give {"images": path, "masks": path, "masks_rgb": path} of sample `index`."""
    return {sub: bf.join(str(sample_dir), sub, f"{index:06d}.png") for sub in SUBDIRS}


def is_complete(sample_dir, index):
    """Tell whether sample `index` has all three files and each decodes."""
    for path in sample_files(sample_dir, index).values():
        if not bf.exists(path):
            return False
        try:
            read_png(path)
        except (OSError, SyntaxError, ValueError):
            return False
    return True


def missing_indices(sample_dir, indices):
    """Give the indices among `indices` whose samples are not complete, in order."""
    return [i for i in indices if not is_complete(sample_dir, i)]


def write_samples(sample_dir, indices, x, num_defect):
    """Write images/, masks/ and masks_rgb/ of a sampled batch, each file atomically."""
    images, index_maps = to_arrays(x)
    for i, image, index_map in zip(indices, images, index_maps):
        paths = sample_files(sample_dir, i)
        write_png(paths["images"], image)
        write_png(paths["masks"], index_map)
        write_png(paths["masks_rgb"], colorize(index_map, num_defect + 1))


def read_sample(sample_dir, index):
    """Give (rgb [H x W x 3] uint8, index map [H x W] uint8) of a written sample."""
    paths = sample_files(sample_dir, index)
    rgb = np.asarray(read_png(paths["images"]).convert("RGB"))
    return rgb, np.asarray(read_png(paths["masks"]))


def write_grid(sample_dir, indices, num_defect):
    """Write grid.png: each sample's image next to the image with its mask overlaid, 4 pairs per row."""
    tiles, size = [], None
    for i in indices[:GRID_MAX_SAMPLES]:
        rgb, index_map = read_sample(sample_dir, i)
        size = size or rgb.shape[:2]
        if rgb.shape[:2] != size:  # pairs at their good images' sizes: shown at the first one's
            rgb = np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.BILINEAR))
            index_map = np.asarray(Image.fromarray(index_map).resize(size[::-1], Image.NEAREST))
        tiles += [rgb, overlay(rgb, index_map, alpha=0.5, num_classes=num_defect + 1)]
    if tiles:
        grid = make_grid(tiles, ncol=min(GRID_COLUMNS, len(tiles)), min_tile=GRID_MIN_TILE)
        write_png(bf.join(str(sample_dir), GRID), grid)


def folder_mask_stats(sample_dir, indices, num_defect):
    """
    Give the class statistics of the written masks of `indices`: :func:`defect_gen.data.stats.mask_statistics`,
    the format of the training statistics that checkpoints carry.
    """
    return mask_statistics(_index_maps(sample_dir, indices, num_defect), num_defect)


def _index_maps(sample_dir, indices, num_defect):
    """Yield the [H x W] class-index maps of the written masks of `indices`, checking their classes."""
    for i in indices:
        path = sample_files(sample_dir, i)["masks"]
        index_map = np.asarray(read_png(path))
        if index_map.size and index_map.max() > num_defect:
            raise SampleFolderError(
                f"{path}: holds class {int(index_map.max())}, above num_defect={num_defect}"
            )
        yield index_map


def format_stats_table(classes, generated, training=None):
    """
    Give a text table of generated vs training mask statistics per class (background first), and the
    share of masks without any defect.

    :param generated, training: dicts as :func:`defect_gen.data.stats.mask_statistics` gives (training may
        be None); a value that is missing or None (no masks) shows as "-".
    """

    def pct(stats, key, k=None):
        value = stats.get(key) if stats else None
        if value is not None and k is not None:
            value = value[k] if k < len(value) else None
        return "-" if value is None else f"{100 * value:.1f}%"

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
    lines.append(
        f"{'(no defect)':{width}}  {pct(generated, 'defect_free'):>16}  "
        f"{pct(training, 'defect_free'):>16}  {'-':>10}  {'-':>10}"
    )
    return "\n".join(lines)
