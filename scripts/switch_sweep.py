"""
Render the fidelity/diversity trade of the switch point S as one PNG.

    python scripts/switch_sweep.py --large_recep L.pt --small_recep S.pt --out sweep.png

Rows are seeds, columns are --steps values from S = 0 (large model only) to S = T (small model only);
each cell is the sample's image with its mask overlaid. A row shares its x_T, so going right shows what
handing more of the denoising to the small (patch) model changes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen import dist_util  # noqa: E402
from defect_gen.commands.cli import (  # noqa: E402
    add_device_argument,
    make_parser,
    run_cli,
    start_processes,
    str2bool,
)
from defect_gen.errors import ConfigError
from defect_gen.fileio import write_png  # noqa: E402
from defect_gen.masks import overlay  # noqa: E402
from defect_gen.nn import AUTOCAST_DTYPES  # noqa: E402
from defect_gen.sampling import generate  # noqa: E402
from defect_gen.sampling.options import SAMPLER_NAMES, SamplingOptions  # noqa: E402
from defect_gen.sampling.pair import load_pair  # noqa: E402
from defect_gen.sampling.sweep import sweep_column_label, sweep_figure  # noqa: E402


def parse_args(argv):
    p = make_parser(__doc__)
    p.add_argument("--large_recep", required=True, help="checkpoint of the large (global) model")
    p.add_argument("--small_recep", required=True, help="checkpoint of the small (patch) model")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument(
        "--steps", default="0,200,400,600,800,1000", help="switch values S, comma-separated"
    )
    p.add_argument(
        "--num_seeds", type=int, default=4, help="rows: seeds seed .. seed + num_seeds - 1"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timestep_respacing", default="50")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default="cold")
    p.add_argument("--eta", type=float, default=0.0)
    p.add_argument("--use_ema", type=str2bool, default=True)
    p.add_argument("--precision", choices=tuple(AUTOCAST_DTYPES), default="fp32")
    p.add_argument("--large_recep_config", help="YAML of the large model (release checkpoints)")
    p.add_argument("--small_recep_config", help="YAML of the small model (release checkpoints)")
    add_device_argument(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--steps {args.steps!r}: expected comma-separated integers") from None
    if not steps or args.num_seeds < 1:
        raise ConfigError("--steps needs at least one value and --num_seeds must be positive")
    device, _, _ = start_processes(args.device)
    pair = load_pair(
        args.large_recep, args.small_recep, large_config=args.large_recep_config,
        small_config=args.small_recep_config, use_ema=args.use_ema, device=device,
    )  # fmt: skip
    columns = []
    for switch_t in steps:
        options = SamplingOptions.create(
            pair.num_timesteps, switch_t=switch_t, sampler=args.sampler,
            timestep_respacing=args.timestep_respacing, eta=args.eta, seed=args.seed,
            precision=args.precision, batch_size=args.num_seeds,
        )  # fmt: skip
        ((_, x),) = generate.generate(pair, list(range(args.num_seeds)), options)
        images, index_maps = generate.to_arrays(x)
        columns.append(
            [overlay(im, m, 0.5, pair.num_defect + 1) for im, m in zip(images, index_maps)]
        )
        print(f"S={switch_t}: done", flush=True)
    tiles = [[col[r] for col in columns] for r in range(args.num_seeds)]
    labels = [sweep_column_label(pair.num_timesteps, s, options.timestep_respacing) for s in steps]
    figure = sweep_figure(tiles, labels, [f"seed {args.seed + r}" for r in range(args.num_seeds)])
    write_png(args.out, figure)
    print(f"wrote {args.out}: {len(steps)} switch values x {args.num_seeds} seeds", flush=True)
    dist_util.cleanup()


if __name__ == "__main__":
    run_cli(main)
