"""
Generate defective images with their masks: the large model for t >= S, the small one for t < S.

    python scripts/sample.py --large_recep L.pt --small_recep S.pt --step_inference 400 --sample_dir out
    mpirun -n 4 python scripts/sample.py ...           # sample i goes to rank i % 4
    python scripts/sample.py ... --large_recep_config large_recep.yml --small_recep_config small_recep.yml
                                                        # the release's checkpoints ({model, ema, optimizer})

Writes images/, masks/ (class index), masks_rgb/, grid.png and manifest.json into --sample_dir. Sample i
comes from seed + i, whatever the batch size or process count. Re-running the same command generates only
the missing samples; other generation parameters into the same folder are refused (unless --overwrite).
"""

import argparse
import json
import time

from .. import dist_util, sampling
from ..cli import run_cli, str2bool
from ..config import ConfigError
from ..fileio import atomic_write_text
from ..logger import configure_logging


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--large_recep", required=True, help="checkpoint of the large (global) model")
    p.add_argument("--small_recep", required=True, help="checkpoint of the small (patch) model")
    p.add_argument(
        "--step_inference",
        type=int,
        required=True,
        help="switch S: the large model denoises t >= S, the small one t < S (0..T)",
    )
    p.add_argument("--sample_dir", required=True, help="output folder")
    p.add_argument(
        "--num_defect", type=int, help="defect classes K (checked against the checkpoints)"
    )
    p.add_argument("--num_samples", type=int, default=16)
    p.add_argument(
        "--batch_size", type=int, default=8, help="samples per forward pass, per process"
    )
    p.add_argument("--seed", type=int, default=0, help="sample i is drawn from seed + i")
    p.add_argument("--sampler", choices=sampling.SAMPLERS, default="cold")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity")
    p.add_argument(
        "--timestep_respacing",
        default="",
        help='"" for all T steps, or e.g. 250, ddim50, "10,20,30"',
    )
    p.add_argument(
        "--use_ema", type=str2bool, default=True, help="EMA weights (default) or raw ones"
    )
    p.add_argument("--precision", choices=tuple(sampling.AUTOCAST_DTYPES), default="fp32")
    p.add_argument(
        "--large_recep_config", help="YAML of the large model (needed for release checkpoints)"
    )
    p.add_argument(
        "--small_recep_config", help="YAML of the small model (needed for release checkpoints)"
    )
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the samples of a folder generated with other parameters",
    )
    p.add_argument(
        "--call_log", help="write every model call as a JSON line {rank, batch, model, t}"
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    if args.num_samples < 1 or args.batch_size < 1:
        raise ConfigError("--num_samples and --batch_size must be positive")
    started = time.perf_counter()
    device = dist_util.setup_dist(args.device)
    rank, world = dist_util.get_rank(), dist_util.get_world_size()
    configure_logging(rank)

    pair = sampling.load_pair(
        args.large_recep, args.small_recep, large_config=args.large_recep_config,
        small_config=args.small_recep_config, use_ema=args.use_ema, num_defect=args.num_defect,
        device=device,
    )  # fmt: skip
    params = sampling.generation_params(
        pair, switch_t=args.step_inference, sampler=args.sampler,
        timestep_respacing=args.timestep_respacing, eta=args.eta, seed=args.seed,
        use_ema=args.use_ema, precision=args.precision,
    )  # fmt: skip
    if not args.overwrite:  # every rank checks, so all raise alike and none waits alone
        sampling.check_folder(args.sample_dir, params)
    dist_util.barrier()
    manifest = sampling.base_manifest(
        pair, params, num_samples=args.num_samples, batch_size=args.batch_size, world_size=world,
        device=device,
    )  # fmt: skip
    if rank == 0:
        if args.overwrite:
            sampling.clear_folder(args.sample_dir)
        sampling.write_manifest(args.sample_dir, manifest)
    dist_util.barrier()
    load_s = time.perf_counter() - started

    todo = sampling.missing_indices(args.sample_dir, range(rank, args.num_samples, world))
    total_todo = sum(dist_util.all_gather_object(len(todo)))
    steps = manifest["steps"]
    if rank == 0:
        print(
            f"{total_todo} of {args.num_samples} samples to generate "
            f"({args.num_samples - total_todo} already complete) with {world} process(es) on {device.type}: "
            f"large model {steps['large']['count']} steps, small {steps['small']['count']} "
            f"(switch {args.step_inference}), {args.sampler} sampler, {pair.resolution} px",
            flush=True,
        )
    calls = [] if args.call_log else None
    gen_started = time.perf_counter()
    for batch, x in sampling.generate(
        pair, todo, switch_t=args.step_inference, seed=args.seed, batch_size=args.batch_size,
        sampler=args.sampler, timestep_respacing=params["timestep_respacing"], eta=args.eta,
        precision=args.precision, progress=rank == 0 and not args.no_progress, call_log=calls,
    ):  # fmt: skip
        sampling.write_samples(args.sample_dir, batch, x, pair.num_defect)
    dist_util.barrier()
    generate_s = time.perf_counter() - gen_started
    generated = sorted(i for part in dist_util.all_gather_object(todo) for i in part)
    all_calls = dist_util.all_gather_object(calls)

    if rank == 0:
        indices = list(range(args.num_samples))
        stats = sampling.folder_mask_stats(args.sample_dir, indices, pair.num_defect)
        sampling.write_grid(args.sample_dir, indices, pair.num_defect)
        timing = sampling.timing_record(load_s, generate_s, len(generated))
        manifest.update(
            status="complete", timing=timing, generated_mask_stats=stats,
            last_run={"generated": generated, "skipped": args.num_samples - len(generated)},
        )  # fmt: skip
        sampling.write_manifest(args.sample_dir, manifest)
        if args.call_log:
            lines = [
                json.dumps({"rank": r, **call}) for r, part in enumerate(all_calls) for call in part
            ]
            atomic_write_text(args.call_log, "".join(line + "\n" for line in lines))
        rate = f"{timing['samples_per_s']:.3f} samples/s" if timing["samples_per_s"] else "-"
        training = pair.large.data_stats or pair.small.data_stats
        print(
            f"done: {len(generated)} samples generated in {generate_s:.1f} s ({rate}, {world} process(es)), "
            f"{args.num_samples - len(generated)} kept; loading took {load_s:.1f} s; "
            f"folder {args.sample_dir}\n"
            + sampling.format_stats_table(pair.classes, stats, training),
            flush=True,
        )
    dist_util.cleanup()


def entry():
    """The console command: user errors become one `error:` line (see defect_gen.cli)."""
    run_cli(main)
