"""
Generate defective images with their masks: the large model for t >= S, the small one for t < S.

    python scripts/sample.py --large_recep L.pt --small_recep S.pt --step_inference 400 --sample_dir out
    python scripts/sample.py --small_recep S.pt --mode inpaint --sample_dir out
                                                        # the small model alone takes every step
    mpirun -n 4 python scripts/sample.py ...           # sample i goes to rank i % 4
    python scripts/sample.py ... --large_recep_config large_recep.yml --small_recep_config small_recep.yml
                                                        # the release's checkpoints ({model, ema, optimizer})

Writes images/, masks/ (class index), masks_rgb/, grid.png and manifest.json into --sample_dir. Sample i
comes from seed + i, whatever the batch size or process count. Re-running the same command generates only
the missing samples; other generation parameters into the same folder are refused (unless --overwrite).

Defects where you want them (see defect_gen/sampling/conditioning.py):
    --mode mask --masks DIR                      the given masks, images drawn around them
    --mode inpaint --mask_source train --per_class 10
                                                 training masks moved at random, inpainted onto good images
                                                 (--good_dir, default the dataset's train/good)
    --mode inpaint --mask_transform flip         ... each mask only mirrored: kept at its place
    --mode inpaint --mask_source joint           masks drawn by the joint model, inpainted onto good images
    --mode inpaint --size 128                    good images resized to 128 x 128 (default: their own size)
Without --large_recep (and --step_inference) the small model takes every step: --mode inpaint only,
with --mask_source train or dir. With it, on a canvas larger than the models' the large model is
skipped as well unless --large_at_size downscale.
Selection (see defect_gen/sampling/keep.py):
    --keep defect                                skip candidates whose mask holds no defect
    --keep balanced [--quota Crack=10,Break=5]   fill per-class quotas (default: training class shares)
    --keep balanced --min_score 8                ... with candidates whose image shows their mask
Every sample's score (defect_gen/sampling/score.py) is in manifest.json.
"""

import dataclasses
import json
import math
import os
import sys
import time

from .. import dist_util, lock
from ..errors import ConfigError
from ..fileio import atomic_write_text
from ..limits import OPTION_RULES, check_number, check_options
from ..masks import DEFAULT_CLASS_WEIGHT_CORRECTION
from ..nn import AUTOCAST_DTYPES
from ..sampling import conditioning, folder, generate, keep
from ..sampling.canvas import LARGE_AT_SIZE
from ..sampling.options import SAMPLER_NAMES, SamplingOptions
from ..sampling.pair import load_pair
from ..sampling.score import sample_scores, score_of
from .cli import add_device_argument, make_parser, run_cli, start_processes, str2bool


def parse_args(argv):
    p = make_parser(__doc__)
    p.add_argument(
        "--large_recep",
        help="checkpoint of the large (global) model; without it the small model takes every step "
        "(--mode inpaint only)",
    )
    p.add_argument("--small_recep", required=True, help="checkpoint of the small (patch) model")
    p.add_argument(
        "--step_inference",
        type=int,
        help="switch S: the large model denoises t >= S, the small one t < S (0..T); needed with "
        "--large_recep, refused without it",
    )
    p.add_argument("--sample_dir", required=True, help="output folder")
    p.add_argument(
        "--num_defect", type=int, help="defect classes K (checked against the checkpoints)"
    )
    p.add_argument(
        "--num_samples", type=int, help="default 16, or the sum of --quota / --per_class"
    )
    p.add_argument(
        "--batch_size", type=int, default=8, help="samples per forward pass, per process"
    )
    p.add_argument("--seed", type=int, default=0, help="sample i is drawn from seed + i")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default="cold")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity")
    p.add_argument(
        "--timestep_respacing",
        default="",
        help='"" for all T steps, or e.g. 250, ddim50, "10,20,30"',
    )
    p.add_argument(
        "--use_ema", type=str2bool, default=True, help="EMA weights (default) or raw ones"
    )
    p.add_argument(
        "--class_weight_correction",
        type=float,
        metavar="S",
        help="for models trained with a class-weighted mask loss: remove S x log(weight) from their "
        "mask logits, so that the weights do not inflate the masks (1: fully, 0: sample as trained; "
        f"default {DEFAULT_CLASS_WEIGHT_CORRECTION})",
    )
    p.add_argument("--precision", choices=tuple(AUTOCAST_DTYPES), default="fp32")
    p.add_argument(
        "--large_recep_config", help="YAML of the large model (needed for release checkpoints)"
    )
    p.add_argument(
        "--small_recep_config", help="YAML of the small model (needed for release checkpoints)"
    )
    add_device_argument(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the samples of a folder generated with other parameters (removes only the "
        "files the tool wrote; refuses if the folder holds others)",
    )
    p.add_argument(
        "--call_log", help="write every model call as a JSON line {rank, batch, model, t}"
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    c = p.add_argument_group("conditioning (defects where you want them)")
    c.add_argument("--mode", choices=conditioning.MODES, default="joint")
    c.add_argument(
        "--mask_source",
        choices=conditioning.MASK_SOURCES,
        help="dir (--masks), train (the dataset's training masks, moved at random) or joint (drawn by "
        "the joint model); default: dir with --masks, else train",
    )
    c.add_argument(
        "--masks", help="folder of class-index mask PNGs (values 0..K) at the model's size"
    )
    c.add_argument(
        "--data_dir",
        help="dataset of --mask_source train and of the default --good_dir "
        "(default: the large checkpoint's, without --large_recep the small one's)",
    )
    c.add_argument("--good_dir", help="good images for --mode inpaint (default: DATA/train/good)")
    c.add_argument(
        "--band",
        type=int,
        help="inpaint: pixels around the defect also generated (default R/16, >= 2)",
    )
    c.add_argument(
        "--per_class", help="train masks: N per class, or Name=N,Name=N (sets --num_samples)"
    )
    c.add_argument(
        "--strict_size", action="store_true", help="refuse good images of another size (no resize)"
    )
    c.add_argument("--resample", type=int, default=0, help="RePaint resampling per step (R)")
    c.add_argument(
        "--size",
        type=int,
        help="inpaint: resize the good images to N x N (N >= the models' size); default: each pair "
        "has its good image's own size",
    )
    c.add_argument(
        "--large_at_size",
        choices=LARGE_AT_SIZE,
        default="skip",
        help="inpaint on a canvas larger than the models': skip the large model (the small one "
        "takes every step; default) or run it on a downscaled copy (docs/results.md run 4)",
    )
    c.add_argument(
        "--harmonize",
        type=str2bool,
        default=True,
        help="inpaint: shift the drawn band smoothly to meet the good image at its border, so that "
        "it shows no lighter or darker patch (default true)",
    )
    c.add_argument(
        "--good_texture",
        type=str2bool,
        default=False,
        help="inpaint: add the good image's fine texture (its 3x3 detail) to the drawn band, which a "
        "short-trained model draws too smooth (default false: on the magnetic tiles it helped uneven "
        "regions and hurt fray ones, docs/results.md run 4)",
    )
    c.add_argument(
        "--mask_transform",
        choices=conditioning.MASK_TRANSFORMS,
        default="random",
        help="train masks: flipped, rotated by k x 90 degrees, scaled and moved at random (default), "
        "or only mirrored left-right / top-bottom, so that each defect keeps its shape, orientation "
        "and place relative to the edges (docs/results.md run 5)",
    )
    k = p.add_argument_group("selection")
    k.add_argument("--keep", choices=keep.KEEP, default="all")
    k.add_argument("--quota", help="--keep balanced: Name=N,Name=N (sets --num_samples)")
    k.add_argument(
        "--max_candidates",
        type=int,
        help=f"--keep: give up after this many candidates (default {keep.MAX_CANDIDATES_FACTOR} "
        "x --num_samples)",
    )
    k.add_argument(
        "--min_score",
        type=float,
        help="--keep defect|balanced: judge a candidate whose score (mask border contrast minus "
        "its chance level, gray levels) is below this as holding no defect",
    )
    return p.parse_args(argv)  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    check_options(args, "sample")  # every number, before anything is read or written
    if (args.num_samples is not None and args.num_samples < 1) or args.batch_size < 1:
        raise ConfigError("--num_samples and --batch_size must be positive")
    _check_models(args)
    started = time.perf_counter()
    device, rank, world = start_processes(args.device)
    lock.check_writable_folder(args.sample_dir, "--sample_dir")
    if args.call_log:
        lock.check_writable_file(args.call_log, "--call_log")
    folder_lock = lock.FolderLock(args.sample_dir, "--sample_dir")
    try:
        return _sample(args, started, device, rank, world, folder_lock)
    finally:
        folder_lock.release()


def _check_models(args):
    """
    ConfigError unless the flags fit the models given: the switch with --large_recep, and without it
    only what the small model alone can draw (inpainting, the large model skipped).
    """
    if args.large_recep is not None:
        if args.step_inference is None:
            raise ConfigError(
                "--step_inference is needed with --large_recep: the switch S (the large model "
                "denoises t >= S, the small one t < S)"
            )
        return
    if args.mode != "inpaint":
        raise ConfigError(
            f"--large_recep is needed in --mode {args.mode}: the large model draws the layout; only "
            "--mode inpaint can run the small model alone"
        )
    if args.mask_source == "joint":
        raise ConfigError(
            "--large_recep is needed with --mask_source joint: the joint model draws the masks; "
            "use --mask_source train or dir to run the small model alone"
        )
    if args.large_at_size == "downscale":
        raise ConfigError(
            "--large_at_size downscale runs the large model: pass --large_recep, or leave the "
            "default skip to run the small model alone"
        )
    if args.large_recep_config is not None:
        raise ConfigError("--large_recep_config has no effect without --large_recep")
    if args.step_inference is not None:
        raise ConfigError(
            "--step_inference has no effect without --large_recep: the small model takes every step"
        )


def _correction(args):
    """The --class_weight_correction strength: the given one, else the default."""
    given = args.class_weight_correction
    return DEFAULT_CLASS_WEIGHT_CORRECTION if given is None else given


@dataclasses.dataclass
class _Job:
    """What a sampling run is to do: the models, the conditioning plan, the options and the counts."""

    pair: object
    plan: object  # a conditioning.Plan, or None in the joint mode
    options: SamplingOptions
    params: dict  # what decides the samples' content: the manifest's "generation"
    quotas: object
    num_samples: int
    training: dict  # the training mask statistics of the checkpoints, or None
    manifest: dict = None
    selection: object = None  # a keep.Selection with --keep defect|balanced


def _sample(args, started, device, rank, world, folder_lock):
    """Run the command's steps: plan, prepare the folder, generate what is missing, finish."""
    job = _plan(args, device, rank)
    _prepare_folder(args, job, device, rank, world, folder_lock)
    load_s = time.perf_counter() - started
    generated, calls, generate_s = _generate_missing(args, job, device, rank, world)
    generated = sorted(i for part in dist_util.all_gather_object(generated) for i in part)
    all_calls = dist_util.all_gather_object(calls)
    if rank == 0:
        _finish(args, job, generated, all_calls, load_s, generate_s, world)
    dist_util.cleanup()


def _load(args, device):
    """Give the model pair; ConfigError when --class_weight_correction cannot apply to it."""
    pair = load_pair(
        args.large_recep, args.small_recep, large_config=args.large_recep_config,
        small_config=args.small_recep_config, use_ema=args.use_ema, num_defect=args.num_defect,
        class_weight_correction=_correction(args), device=device,
    )  # fmt: skip
    if args.class_weight_correction and not any(m.prior_correction for m in pair.models):
        which = "the small checkpoint was not" if pair.large is None else "neither checkpoint was"
        raise ConfigError(
            f"--class_weight_correction has no effect: {which} trained with class "
            "weights on cross-entropy mask logits (train.mask_class_weight_power > 0, mask_mode "
            "consistent)"
        )
    return pair


def _plan(args, device, rank):
    """Load the models and decide what the run generates: give the _Job."""
    pair = _load(args, device)
    plan = conditioning.build_plan(
        pair, mode=args.mode, mask_source=args.mask_source, masks=args.masks,
        good_dir=args.good_dir, data_dir=args.data_dir, band=args.band, per_class=args.per_class,
        strict_size=args.strict_size, resample=args.resample, seed=args.seed, size=args.size,
        harmonize=args.harmonize, large_at_size=args.large_at_size, good_texture=args.good_texture,
        mask_transform=args.mask_transform,
    )  # fmt: skip
    if plan is None and args.data_dir is not None:
        raise ConfigError("--data_dir has no effect in --mode joint; use --mode mask or inpaint")
    training = next((m.data_stats for m in pair.models if m.data_stats), None)
    quotas, num_samples = keep.resolve_quotas(
        args.keep, args.quota, args.num_samples, pair.classes, training
    )
    if plan is not None and plan.per_class:
        if args.keep == "balanced":
            raise ConfigError("--per_class and --keep balanced both set class quotas; give one")
        total = sum(plan.per_class.values())
        if args.keep == "all":
            if args.num_samples is not None and args.num_samples != total:
                raise ConfigError(
                    f"--num_samples {args.num_samples} differs from the sum of --per_class ({total})"
                )
            num_samples = total
    count_rule = OPTION_RULES["sample"]["num_samples"]
    check_number("--num_samples (with --per_class or --quota)", num_samples, count_rule)
    if args.keep == "all" and args.max_candidates is not None:
        raise ConfigError("--max_candidates applies to --keep defect|balanced only")
    if args.min_score is not None and (args.keep == "all" or not math.isfinite(args.min_score)):
        raise ConfigError("--min_score must be a finite number and applies to --keep defect|balanced only")
    # without a large model the small one takes every step: the switch is T
    switch_t = pair.num_timesteps if pair.large is None else args.step_inference
    options = SamplingOptions.create(
        pair.num_timesteps, switch_t=switch_t, sampler=args.sampler,
        timestep_respacing=args.timestep_respacing, eta=args.eta, seed=args.seed,
        use_ema=args.use_ema, precision=args.precision, class_weight_correction=_correction(args),
        batch_size=args.batch_size, resample=args.resample,
        progress=rank == 0 and not args.no_progress,
    )  # fmt: skip
    params = options.to_manifest(pair)
    if plan is not None:  # the joint mode's parameters stay as they were
        params.update(plan.params)
    if args.keep != "all":
        params.update(keep=args.keep, quotas=quotas)
    if args.min_score is not None:
        params["min_score"] = float(args.min_score)
    return _Job(pair, plan, options, params, quotas, num_samples, training)


def _prepare_folder(args, job, device, rank, world, folder_lock):
    """Check the folder against the job, lock it and write the "running" manifest (rank 0)."""
    old = None
    # every rank checks, so all raise alike and none waits alone
    if args.overwrite:
        lock.check_no_foreign_files(args.sample_dir, _manifest_or_none(args.sample_dir))
    else:
        folder.check_folder(args.sample_dir, job.params)
        folder.check_sample_count(args.sample_dir, job.num_samples)
        old = folder.read_manifest(args.sample_dir)
    job.manifest = _manifest(args, job, old, device, world)
    error = None
    if rank == 0:
        try:
            os.makedirs(args.sample_dir, exist_ok=True)
            folder_lock.acquire()
            if not args.overwrite:  # again under the lock: another run may have written meanwhile
                folder.check_folder(args.sample_dir, job.params)
                folder.check_sample_count(args.sample_dir, job.num_samples)
        except ConfigError as exc:
            error = exc
    lock.agree_on_error(error)
    if rank == 0:
        if args.overwrite:
            folder.clear_folder(args.sample_dir)
        folder.write_manifest(args.sample_dir, job.manifest)
    dist_util.barrier()


def _manifest(args, job, old, device, world):
    """Give the manifest before sampling; restore the selection of `old` into job.selection."""
    manifest = folder.base_manifest(
        job.pair, job.options, job.params, num_samples=job.num_samples, world_size=world,
        device=device,
    )  # fmt: skip
    manifest["mode"] = args.mode
    if job.params.get("large_at_size") == "skip":  # on a larger canvas the small model takes every step
        T = job.pair.num_timesteps
        manifest["steps"] = generate.steps_record(T, T, job.options.timestep_respacing)
    if args.keep != "all":
        job.selection = keep.Selection.restore(
            (old or {}).get("selection"), args.keep, job.num_samples, job.pair.classes, job.quotas,
            args.seed,
        )  # fmt: skip
        manifest["seeds"] = (
            f"candidate j is drawn from seed {args.seed} + j; the kept candidates are samples 0, 1, .. "
            "in order (selection.kept), the others are listed in selection.skipped_seeds"
        )
        manifest["selection"] = job.selection.record(_records(job.plan, job.selection))
    elif job.plan is not None:
        manifest["samples"] = [{"index": i, **job.plan.record(i)} for i in range(job.num_samples)]
    return manifest


def _generate_missing(args, job, device, rank, world):
    """
    Generate this rank's missing samples (then, with --keep, new candidates); give (the indices it
    wrote, its model calls or None, the seconds generation took).
    """
    pair, sel, num_samples = job.pair, job.selection, job.num_samples
    calls = [] if args.call_log else None
    steps = job.manifest["steps"]
    if sel is None:
        todo = folder.missing_indices(args.sample_dir, range(rank, num_samples, world))
        total_todo = sum(dist_util.all_gather_object(len(todo)))
        what = f"{total_todo} of {num_samples} samples to generate ({num_samples - total_todo} already complete)"
    else:  # kept samples that are missing are regenerated from their seeds first
        kept = [j for j, _ in sel.kept]
        todo = folder.missing_indices(args.sample_dir, range(rank, len(kept), world))
        total_todo = sum(dist_util.all_gather_object(len(todo)))
        what = (
            f"--keep {args.keep}: {len(kept)} of {num_samples} samples kept so far, {total_todo} of them "
            f"missing; candidates from seed {args.seed + sel.next}"
        )
    if rank == 0:
        print(
            f"{what} with {world} process(es) on {device.type}, --mode {args.mode}: "
            f"large model {steps['large']['count']} steps, small {steps['small']['count']} "
            f"({_switch_text(job)}), {args.sampler} sampler, {_sizes_text(job)}",
            flush=True,
        )
    started = time.perf_counter()
    if sel is None:
        for batch, x in generate.generate(pair, todo, job.options, call_log=calls, plan=job.plan):
            folder.write_samples(args.sample_dir, batch, x, pair.num_defect)
    else:
        output = {kept[i]: i for i in todo}
        candidates = [kept[i] for i in todo]
        for batch, x in generate.generate(
            pair, candidates, job.options, call_log=calls, plan=job.plan
        ):
            folder.write_samples(args.sample_dir, [output[j] for j in batch], x, pair.num_defect)
        todo = todo + _select(args, job, calls, rank, world)
    dist_util.barrier()
    return todo, calls, time.perf_counter() - started


def _finish(args, job, generated, all_calls, load_s, generate_s, world):
    """Write the grid, the complete manifest and the call log; print the summary (rank 0)."""
    pair, sel, num_samples, manifest = job.pair, job.selection, job.num_samples, job.manifest
    indices = list(range(num_samples))
    stats = folder.folder_mask_stats(args.sample_dir, indices, pair.num_defect)
    manifest["scores"] = sample_scores(args.sample_dir, indices)
    folder.write_grid(args.sample_dir, indices, pair.num_defect)
    timing = folder.timing_record(load_s, generate_s, len(generated))
    manifest.update(
        status="complete", timing=timing, generated_mask_stats=stats,
        last_run={"generated": generated, "skipped": num_samples - len(generated)},
    )  # fmt: skip
    inside = _relative_inside(args.call_log, args.sample_dir) if args.call_log else None
    if inside:  # the tool wrote it: a later --overwrite may remove it
        manifest["files"] = [inside]
    folder.write_manifest(args.sample_dir, manifest)
    if args.call_log:
        lines = [
            json.dumps({"rank": r, **call}) for r, part in enumerate(all_calls) for call in part
        ]
        atomic_write_text(args.call_log, "".join(line + "\n" for line in lines))
    rate = f"{timing['samples_per_s']:.3f} samples/s" if timing["samples_per_s"] else "-"
    chosen = ""
    if sel is not None:
        chosen = (
            f"; --keep {args.keep} kept {len(sel.kept)} of {sel.next} candidates "
            f"({len(sel.skipped)} seeds skipped)"
        )
    print(
        f"done: {len(generated)} samples generated in {generate_s:.1f} s ({rate}, {world} process(es)), "
        f"{num_samples - len(generated)} kept{chosen}; loading took {load_s:.1f} s; "
        f"folder {args.sample_dir}\n"
        + folder.format_stats_table(pair.classes, stats, job.training),
        flush=True,
    )


def _switch_text(job):
    """Give the switch for the progress line, or that the small model runs alone."""
    if job.pair.large is None:
        return "no large model: the small one alone"
    return f"switch {job.options.switch_t}"


def _sizes_text(job):
    """Give the pairs' size for the progress line: the models' size, or the inpainting canvases."""
    sizes = job.params.get("canvas_sizes")
    if not sizes:
        return f"{job.pair.resolution} px"
    return "pairs at " + ", ".join(f"{w}x{h}" for h, w in sizes) + " px"


def _records(plan, sel):
    """Give {candidate j: its conditioning record} of the kept candidates (empty in the joint mode)."""
    return {j: plan.record(j) for j, _ in sel.kept} if plan is not None else {}


def _select(args, job, calls, rank, world):
    """
    Judge candidates in blocks of world x batch_size until the selection is done; each rank generates
    every world-th candidate of a block and writes the kept ones. Give the output indices this rank wrote.
    """
    pair, sel, manifest = job.pair, job.selection, job.manifest
    written = []
    limit = args.max_candidates or keep.MAX_CANDIDATES_FACTOR * job.num_samples
    while not sel.done:
        if sel.next >= limit:
            raise ConfigError(
                f"--keep {args.keep}: still short after {sel.next} candidates (seeds {args.seed}.."
                f"{args.seed + sel.next - 1}): {sel.shortfall()}; the models rarely draw it: pass a "
                f"larger --max_candidates or lower the quota (the {len(sel.kept)} samples kept so far stay)"
            )
        block = list(range(sel.next, min(sel.next + world * args.batch_size, limit)))
        mine, found = {}, {}
        for batch, x in generate.generate(
            pair, block[rank::world], job.options, call_log=calls, plan=job.plan
        ):
            images, index_maps = generate.to_arrays(x)
            for b, j in enumerate(batch):
                mine[j] = x[b : b + 1]
                found[j] = conditioning.main_class(index_maps[b])
                if args.min_score is not None:
                    score = score_of(images[b], index_maps[b])
                    if score is None or score < args.min_score:
                        found[j] = 0  # judged as holding no defect
        for part in dist_util.all_gather_object(found):
            found.update(part)
        for j in block:
            i = sel.offer(j, found[j])
            if i is not None and j in mine:
                folder.write_samples(args.sample_dir, [i], mine[j], pair.num_defect)
                written.append(i)
        manifest["selection"] = sel.record(_records(job.plan, sel))
        if rank == 0:  # progress, so that a killed run resumes from here
            folder.write_manifest(args.sample_dir, manifest)
    return written


def _manifest_or_none(sample_dir):
    try:
        return folder.read_manifest(sample_dir)
    except ConfigError:
        return None


def _relative_inside(path, folder):
    """Give `path` relative to `folder` when it lies inside it, else None."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    return None if rel.startswith("..") else rel


def entry():
    """The console command: user errors become one `error:` line (see defect_gen.commands.cli)."""
    sys.exit(run_cli(main))
