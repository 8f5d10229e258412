"""
Does the synthetic data help segmentation on my data? Train a compact segmentation net on (a) real,
(b) real + classic augmentation, (c) real + copy-paste, and per synthetic set NAME (d:NAME) real +
the set and (e:NAME) copy-paste + the set, with one schedule and the same seeds; score each on the
held-out real pairs, compare each synthetic row with (a) and (c) by paired deltas with 95%
intervals, and measure each set (guard, memorisation, diversity, mask statistics, optional FID/KID).
Writes report.json, report.md, report.png. With --tune, picks the segmenter settings by
cross-validation over the training pairs instead (never reading the reported images).

    python scripts/evaluate.py --data_dir D --num_train_per_type 5 --synthetic NAME=DIR ... \
        --out DIR [--resolution 128] [--seeds 5] [--synthetic_ratio 1 | 0.5,1,2,3] \
        [--synthetic_select first|defect|balanced] [--baselines real,classic,copy_paste] \
        [--regimes d,e] [--allow_overlap]
    python scripts/evaluate.py --data_dir D --num_train_per_type 5 --out DIR --tune \
        [--tune_grid "lr=5e-4,1e-3,2e-3;dice_weight=0,1"] [--tune_folds 3]
"""

import argparse
import logging
import os
import sys

import torch

from ..dist_util import parse_device
from ..errors import EvaluationError
from ..evaluation import tune
from ..evaluation.plan import (
    BASELINE_NAMES,
    EvalConfig,
    check_config,
    parse_synthetic_arg,
    resolve_rows,
)
from ..evaluation.report import write_report
from ..evaluation.runner import run_evaluation
from ..evaluation.segtrain import TrainSettings
from ..evaluation.selection import SELECTIONS
from ..lock import check_writable_folder
from ..limits import Rule, check_number, check_options
from .cli import run_cli


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
        action="append",
        default=None,
        metavar="[NAME=]DIR",
        help="sample folder (images/, masks/, manifest.json), repeatable; NAME labels its rows "
        "(default: the folder's name); without it rows a-c only",
    )
    p.add_argument("--out", required=True, help="output folder for report.json / .md / .png")
    p.add_argument("--resolution", type=int, default=128, help="square training/validation size")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1) per row")
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
        default="1",
        help="synthetic:real pair count, or a comma list (0.5,1,2,3) for one row per ratio",
    )
    p.add_argument(
        "--synthetic_select",
        default="balanced",
        choices=SELECTIONS,
        help="first: file order; defect: pairs holding a defect; balanced: defect pairs filling "
        "per-class quotas in proportion to the real training classes",
    )
    p.add_argument(
        "--baselines",
        default="real,classic,copy_paste",
        help="comma list out of real, classic, copy_paste (or none): the baseline rows a, b, c",
    )
    p.add_argument(
        "--regimes",
        default="d,e",
        help="comma list out of d (real + set), e (copy-paste + set): rows per synthetic set",
    )
    p.add_argument(
        "--modes",
        default=None,
        help="older spelling: comma list of row letters out of a..e (replaces --baselines and "
        "--regimes)",
    )
    p.add_argument(
        "--allow_overlap",
        action="store_true",
        help="evaluate a synthetic set the guard refuses (its generator saw reported images, or "
        "its classes differ); the report carries a warning",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        help="bootstrap resamples of the validation images (0: no bootstrap interval)",
    )
    tune_help = "pick segmenter settings by cross-validation over the training pairs and stop"
    p.add_argument("--tune", action="store_true", help=tune_help)
    p.add_argument(
        "--tune_grid",
        help='settings to try, "key=v1,v2;key=v1,..." over lr, dice_weight, iterations, '
        "batch_size, class_balance (default: the frozen defaults' grid)",
    )
    p.add_argument("--tune_folds", type=int, default=3, help="cross-validation folds for --tune")
    p.add_argument("--num_defect", type=int, default=None, help="number of defect classes K")
    p.add_argument("--classes", help="comma list of defect type names in class order (MVTec)")
    p.add_argument("--max_val", type=int, help="at most this many validation pairs per defect type")
    p.add_argument("--copy_paste_probability", type=float, default=0.5)
    near_copy = "near-copy when NN distance / median train-NN distance is below this"
    p.add_argument("--memorisation_threshold", type=float, default=1.0 / 3.0, help=near_copy)
    p.add_argument(
        "--inception_weights",
        help="feature extractor for FID/KID: TorchScript file or FIDInceptionV3 "
        "state_dict (pytorch-fid weights); without it FID/KID are not computed",
    )
    p.add_argument("--inception_size", type=int, default=299, help="extractor input size")
    p.add_argument(
        "--inception_range",
        choices=["byte", "unit", "signed"],
        help="value range the extractor expects: byte [0,255], unit [0,1], signed "
        "[-1,1] (default: signed for FIDInceptionV3 weights, byte for StyleGAN's "
        "TorchScript Inception, else unit)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--num_threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="segmenter trainings run at once, one process each (results do not depend on it; "
        "on a GPU 4 share it well)",
    )
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_options(args, "evaluate")  # every number, before anything is read or written
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    device = _device(args.device)
    config = EvalConfig(
        data_dir=args.data_dir,
        num_train_per_type=args.num_train_per_type,
        synthetic=[parse_synthetic_arg(v) for v in args.synthetic or []],
        resolution=args.resolution,
        seeds=args.seeds,
        baselines=_baselines(args.baselines),
        regimes=tuple(r.strip() for r in args.regimes.split(",") if r.strip()),
        modes=tuple(args.modes.split(",")) if args.modes else None,
        synthetic_ratio=_ratios(args.synthetic_ratio),
        synthetic_select=args.synthetic_select,
        allow_overlap=args.allow_overlap,
        bootstrap_resamples=args.bootstrap,
        num_defect=args.num_defect,
        classes=[c.strip() for c in args.classes.split(",")] if args.classes else None,
        max_val=args.max_val,
        device=device,
        copy_paste_probability=args.copy_paste_probability,
        memorisation_threshold=args.memorisation_threshold,
        inception_weights=args.inception_weights,
        inception_size=args.inception_size,
        inception_range=args.inception_range,
        workers=args.workers,
        train=TrainSettings(
            iterations=args.iterations,
            batch_size=args.batch_size,
            lr=args.lr,
            dice_weight=args.dice_weight,
            class_balance=bool(args.class_balance),
            width=args.width,
        ),
    )
    if args.modes and (args.baselines != "real,classic,copy_paste" or args.regimes != "d,e"):
        raise EvaluationError("--modes replaces --baselines and --regimes; give one or the other")
    if args.tune and (args.synthetic or args.modes):
        raise EvaluationError("--tune runs regime (a) on the training pairs only; drop --synthetic")
    # Fail before minutes of training, not after; the folder itself is made by the report
    # writers, so a refused run leaves nothing behind.
    check_config(config)
    resolve_rows(config)
    folders_given = [("--data_dir", args.data_dir)] + [
        ("--synthetic", parse_synthetic_arg(v)[1]) for v in args.synthetic or []
    ]
    for flag, path in folders_given:
        if not os.path.isdir(path):
            raise EvaluationError(f"{flag} {path}: no such folder")
    check_writable_folder(args.out, "--out")
    if args.tune:
        record = tune.run_tuning(config, tune.parse_grid(args.tune_grid), args.tune_folds)
        paths = tune.write_tuning(record, args.out)
        best = record["best"]
        print(f"tuned: {record['flags']} (cross-validated mIoU w/o bg {best['mean']:.4f})")
    else:
        result = run_evaluation(config)
        paths = write_report(result, args.out)
    logging.getLogger("evaluate").info("wrote %s", ", ".join(paths.values()))
    return 0


def _baselines(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    out = []
    for n in names:
        letter = BASELINE_NAMES.get(n, n if n in BASELINE_NAMES.values() else None)
        if letter is None:
            raise EvaluationError(
                f"--baselines: unknown baseline {n!r}; choose from real, classic, copy_paste, none"
            )
        out.append(letter)
    return tuple(out)


def _ratios(text):
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise EvaluationError(
            f"--synthetic_ratio: {text!r} is not a number or comma list"
        ) from None
    if not values:
        raise EvaluationError("--synthetic_ratio: no value given")
    for value in values:
        check_number("--synthetic_ratio", value, Rule("float", 0, 1000, open_lo=True))
    return tuple(values)


def _device(name):
    """Give the device string of --device, chosen as the other commands choose it (dist_util)."""
    use_cuda, index = parse_device(name)
    if not use_cuda:
        return "cpu"
    return "cuda" if index is None else f"cuda:{index}"


def entry():
    """The console command: user errors become one `error:` line (see defect_gen.commands.cli)."""
    sys.exit(run_cli(main))
