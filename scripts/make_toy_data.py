"""Write a small procedural defect dataset (official or MVTec AD layout) to try Defect-Gen on a CPU."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.data.toy import DEFAULT_MULTI_DEFECT_P, DEFAULT_NUM_DEFECT, LAYOUTS, write_dataset
from defect_gen.errors import ToyDataError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", required=True, help="dataset folder to write (new, or an earlier toy one)"
    )
    parser.add_argument("--layout", choices=LAYOUTS, default="official")
    parser.add_argument(
        "--num_per_type", type=int, default=8, help="defective images per defect type"
    )
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--num_defect", type=int, default=DEFAULT_NUM_DEFECT, help="defect classes (1..4)"
    )
    parser.add_argument(
        "--multi_defect_p",
        type=float,
        default=DEFAULT_MULTI_DEFECT_P,
        help="probability that an image also holds a defect of another class",
    )
    parser.add_argument("--num_good", type=int, default=4, help="train/good images (mvtec layout)")
    args = parser.parse_args(argv)
    try:
        classes = write_dataset(
            args.out,
            layout=args.layout,
            num_per_type=args.num_per_type,
            size=args.size,
            seed=args.seed,
            num_defect=args.num_defect,
            multi_defect_p=args.multi_defect_p,
            num_good=args.num_good,
        )
    except ToyDataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    good = f" + {args.num_good} train/good" if args.layout == "mvtec" else ""
    print(
        f"wrote {len(classes) * args.num_per_type} images ({args.num_per_type} per type{good}), "
        f"{args.size}x{args.size}, {args.layout} layout, to {args.out}"
    )
    print(
        f"num_defect: {len(classes)}; classes: "
        + ", ".join(f"{k}={name}" for k, name in enumerate(classes, start=1))
    )


if __name__ == "__main__":
    main()
