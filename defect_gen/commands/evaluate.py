"""
Does the synthetic data help segmentation on my data? Train a compact segmentation net under four
regimes — (a) real, (b) real + classic augmentation, (c) real + copy-paste, (d) real + synthetic —
with one schedule and the same seeds, score each on the held-out real pairs, and measure the
synthetic set (memorisation, diversity, mask statistics, optional FID/KID). Writes report.json,
report.md, report.png.

    python scripts/evaluate.py --data_dir D --num_train_per_type 5 --synthetic DIR --out DIR \
        [--resolution 128] [--seeds 3] [--iterations 600] [--synthetic_ratio 1.0]
"""

import argparse
import logging
import os
import sys

import torch

from ..evaluation.data import EvaluationError
from ..evaluation.report import write_report
from ..evaluation.runner import EvalConfig, run_evaluation
from ..evaluation.segtrain import TrainSettings
from ..image_datasets import DatasetError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True, help="real dataset folder (any supported layout)")
    p.add_argument(
        "--num_train_per_type",
        type=int,
        default=5,
        help="first N sorted images per defect type train; the rest validate",
    )
    p.add_argument(
        "--synthetic",
        default=None,
        help="sample folder (images/, masks/, manifest.json); without it modes a-c only",
    )
    p.add_argument("--out", required=True, help="output folder for report.json / .md / .png")
    p.add_argument("--resolution", type=int, default=128, help="square training/validation size")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1) per mode")
    p.add_argument(
        "--iterations",
        type=int,
        default=TrainSettings.iterations,
        help="training iterations per mode and seed",
    )
    p.add_argument("--batch_size", type=int, default=TrainSettings.batch_size)
    p.add_argument(
        "--lr", type=float, default=TrainSettings.lr, help="AdamW learning rate (cosine decay)"
    )
    p.add_argument(
        "--dice_weight",
        type=float,
        default=TrainSettings.dice_weight,
        help="weight of the soft-Dice term added to cross-entropy (0 = CE only)",
    )
    p.add_argument(
        "--class_balance",
        type=int,
        choices=[0, 1],
        default=int(TrainSettings.class_balance),
        help="1: weight cross-entropy by sqrt(background / class pixels) of real training masks",
    )
    p.add_argument(
        "--width", type=int, default=TrainSettings.width, help="SegNet width (16: ~5 M parameters)"
    )
    p.add_argument(
        "--synthetic_ratio",
        type=float,
        default=1.0,
        help="synthetic:real pair count in mode d (1.0 = as many synthetic as real)",
    )
    p.add_argument(
        "--modes",
        default=None,
        help="comma list out of a,b,c,d (default a,b,c,d; a,b,c without --synthetic)",
    )
    p.add_argument("--num_defect", type=int, default=None, help="number of defect classes K")
    p.add_argument(
        "--classes",
        default=None,
        help="comma list of defect type names in class order (MVTec layout)",
    )
    p.add_argument(
        "--max_val",
        type=int,
        default=None,
        help="at most this many validation pairs per defect type",
    )
    p.add_argument("--copy_paste_probability", type=float, default=0.5)
    p.add_argument(
        "--memorisation_threshold",
        type=float,
        default=1.0 / 3.0,
        help="near-copy when NN distance / median train-NN distance is below this",
    )
    p.add_argument(
        "--inception_weights",
        default=None,
        help="feature extractor for FID/KID: TorchScript file or FIDInceptionV3 "
        "state_dict (pytorch-fid weights); without it FID/KID are not computed",
    )
    p.add_argument("--inception_size", type=int, default=299, help="extractor input size")
    p.add_argument(
        "--inception_range",
        default=None,
        choices=["byte", "unit", "signed"],
        help="value range the extractor expects: byte [0,255], unit [0,1], signed "
        "[-1,1] (default: signed for FIDInceptionV3 weights, byte for StyleGAN's "
        "TorchScript Inception, else unit)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--num_threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = EvalConfig(
        data_dir=args.data_dir,
        num_train_per_type=args.num_train_per_type,
        synthetic=args.synthetic,
        resolution=args.resolution,
        seeds=args.seeds,
        modes=tuple(args.modes.split(",")) if args.modes else None,
        synthetic_ratio=args.synthetic_ratio,
        num_defect=args.num_defect,
        classes=[c.strip() for c in args.classes.split(",")] if args.classes else None,
        max_val=args.max_val,
        device=device,
        copy_paste_probability=args.copy_paste_probability,
        memorisation_threshold=args.memorisation_threshold,
        inception_weights=args.inception_weights,
        inception_size=args.inception_size,
        inception_range=args.inception_range,
        train=TrainSettings(
            iterations=args.iterations,
            batch_size=args.batch_size,
            lr=args.lr,
            dice_weight=args.dice_weight,
            class_balance=bool(args.class_balance),
            width=args.width,
        ),
    )
    try:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EvaluationError(f"--device {device}: CUDA is not available here")
        try:
            os.makedirs(args.out, exist_ok=True)  # fail before minutes of training, not after
        except OSError as e:
            message = f"{args.out}: cannot create the output folder ({e.strerror})"
            raise EvaluationError(message) from None
        result = run_evaluation(config)
        paths = write_report(result, args.out)
    except (EvaluationError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.getLogger("evaluate").info("wrote %s", ", ".join(paths.values()))
    return 0


def entry():
    """The console command."""
    sys.exit(main())
