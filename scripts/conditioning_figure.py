"""
The README's "defects where you want them" figure: one good image and one mask, and several samples of each
mode (joint: image and mask drawn together; mask: the image drawn around the given mask; inpaint: the defect
drawn into the good image).

    python scripts/conditioning_figure.py --large_recep runs/demo/large --small_recep runs/demo/small \\
        --good runs/demo/good/train/good/000.png --mask runs/demo/data/converted_ground_truth/scratch/000.png \\
        --out docs/images/conditioning.png

Samples i = 0..n-1 of each row come from seed + i, as in scripts/sample.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from defect_gen.commands.cli import (
    add_device_argument,
    make_parser,
    run_cli,
    start_processes,
)  # noqa: E402
from defect_gen.fileio import write_png  # noqa: E402
from defect_gen.masks import colorize, overlay  # noqa: E402
from defect_gen.sampling import conditioning, generate  # noqa: E402
from defect_gen.sampling.options import SamplingOptions  # noqa: E402
from defect_gen.sampling.pair import load_pair  # noqa: E402
from defect_gen.sampling.sweep import sweep_figure  # noqa: E402


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--large_recep", required=True)
    p.add_argument("--small_recep", required=True)
    p.add_argument("--good", required=True, help="a good image")
    p.add_argument("--mask", required=True, help="a class-index mask at the models' size")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--step_inference", type=int, default=500)
    p.add_argument("--timestep_respacing", default="100")
    p.add_argument("--num", type=int, default=4, help="samples per mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--band", type=int, help="inpaint band (default R/16, >= 2)")
    p.add_argument("--resample", type=int, default=0)
    add_device_argument(p)
    args = p.parse_args(argv)
    device, _, _ = start_processes(args.device)
    pair = load_pair(args.large_recep, args.small_recep, device=device)
    res, k = pair.resolution, pair.num_defect
    index_map = conditioning.read_index_mask(args.mask, k, res)
    good, size = conditioning.read_good(args.good, res, strict_size=False)
    band = conditioning.default_band(res) if args.band is None else args.band
    common = dict(num_defect=k, resolution=res, seed=args.seed, classes=list(pair.classes))
    plans = {
        "joint": None,
        "mask": conditioning.Plan(mode="mask", mask_source="dir", masks=[(args.mask, index_map)], **common),
        "inpaint": conditioning.Plan(
            mode="inpaint", mask_source="dir", masks=[(args.mask, index_map)],
            goods=[(args.good, good, size)], band=band, **common,
        ),
    }  # fmt: skip
    colours = k + 1
    rows = [[good, colorize(index_map, colours), overlay(good, index_map, 0.5, colours)]]
    rows[0] += [np.full_like(good, 255)] * (args.num - len(rows[0]))
    for mode, plan in plans.items():
        row = []
        options = SamplingOptions.create(
            pair.num_timesteps, switch_t=args.step_inference, seed=args.seed, batch_size=args.num,
            timestep_respacing=args.timestep_respacing, resample=args.resample if plan else 0,
        )  # fmt: skip
        for _, x in generate.generate(pair, list(range(args.num)), options, plan=plan):
            images, masks = generate.to_arrays(x)
            for image, mask in zip(images, masks):
                row.append(overlay(image, mask, 0.5, colours) if mode == "joint" else image)
        rows.append(row)
    labels = ["good", "mask", "mask on good"] + [""] * (args.num - 3)
    cols = [f"{labels[i]}\nseed {args.seed + i}" for i in range(args.num)]
    figure = sweep_figure(rows, cols, ["input", "joint", "mask", "inpaint"])
    write_png(args.out, figure)
    print(f"wrote {args.out}: {args.num} samples per mode, {res} px, band {band} px")


if __name__ == "__main__":
    run_cli(main)
