"""
Does the synthetic data help segmentation on my data? Train a compact segmentation net on (a) real,
(a+good) real + good images, (b) real + classic augmentation, (c) copy-paste onto good images, and
per synthetic set NAME (d:NAME) real + the set and (e:NAME) copy-paste + the set, with one schedule
and the same seeds; score each on the held-out real pairs, compare each synthetic row with the
better (a) row and with (c) by paired deltas with 95% intervals, and measure each set (guard,
memorisation, diversity, mask statistics, optional FID/KID). Writes report.json, report.md,
report.png. With --tune, picks the segmenter and baseline settings by cross-validation over the
training pairs instead (never reading the reported images).

Good images: the dataset's defect-free images from the TRAINING side only (train/good, else the
good folder beside the defect types), resized like the real pairs, all-background masks; the guard
refuses one whose pixels equal a reported image's (--num_good N, default all, 0 disables).

Baselines: (a) is the better (by mean mIoU w/o background) of row a, real pairs alone, and row
a+good, real pairs + the good images as negatives (a third stream, each good image drawn as often as
a real pair). (b) flips, 90° rotations, brightness / contrast jitter. (c) real pairs + the good
images with, at --copy_paste_probability, one real defect region pasted onto each drawn good image:
randomly flipped, rotated by k * 90°, scaled 0.75-1.25, placed fully inside, blended by
--copy_paste_blend alpha (feathered edge over --copy_paste_feather px) or poisson; the mask takes
the class on the region. --copy_paste_target defective is the old (c): regions pasted pixel-exactly onto
the other real pairs; both: onto good images and real pairs.

How much synthetic data: --synthetic_count 25,100,400 gives rows of that many distinct pairs per set
(chosen by --synthetic_select); --synthetic_share 0.25,0.5 makes the synthetic pairs that fraction
of every batch; rows are keyed d:NAME@n=COUNT,share=SHARE. Filtered against unfiltered sets:
--synthetic_select scored (each class's best-scoring pairs) or realistic (each class's defects
nearest the real training ones in step and texture) against balanced, or two --synthetic NAME=DIR
folders.

Resuming: every finished segmenter training is kept in --cache (default OUT/runs) under a digest of
the training code, its pairs, settings, seed and augmentations; a re-run trains only what is missing,
and runs sharing the folder share their common rows.

    python scripts/evaluate.py --data_dir D --num_train_per_type 5 --synthetic NAME=DIR ... \
        --out DIR [--resolution 128] [--seeds 10] [--first_seed 0] \
        [--synthetic_ratio 1 | 0.5,1,2,3] [--synthetic_count 25,100,400] \
        [--synthetic_share 0.25,0.5] [--num_good N] [--copy_paste_target good|defective|both] \
        [--copy_paste_blend alpha|poisson] \
        [--synthetic_select first|defect|balanced|scored|realistic] \
        [--baselines real,classic,copy_paste] [--regimes d,e] [--allow_overlap]
    python scripts/evaluate.py --data_dir D --num_train_per_type 5 --out DIR --tune \
        [--tune_grid "lr=5e-4,1e-3,2e-3;dice_weight=0,1"] [--tune_folds 3] \
        [--tune_baseline_grid "with_good=0,1;copy_paste_probability=0.5,1;..."]
    python scripts/evaluate.py ... --tuned DIR/tune.json   # the main run with the tuned values
"""

import argparse
import logging
import os
import sys

import torch

from ..dist_util import parse_device
from ..errors import EvaluationError
from ..evaluation import amount, baseline_tune, tune
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
from ..limits import Rule, check_number, check_options
from ..lock import check_writable_folder
from .cli import run_cli


def parse_args(argv=None):
    parts = __doc__.split("\n\n")
    p = argparse.ArgumentParser(
        description=parts[0],
        # The good images, the baselines, the synthetic amounts and resuming, as written above.
        epilog="\n\n".join(parts[1:5]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="number of seeds per row (default 10: every row a verdict compares; not with --tune, "
        "which trains seed 0 on every fold)",
    )
    p.add_argument(
        "--first_seed",
        type=int,
        default=0,
        help="the rows train seeds FIRST..FIRST+N-1 (default 0): a run that adds new seeds to an "
        "earlier one, e.g. --first_seed 20 --seeds 12 for seeds 20-31 (benchmarks/compare_rows.py "
        "compares rows across reports, seed by seed)",
    )
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
        default=None,
        help="synthetic:real pair count, or a comma list (0.5,1,2,3) for one row per ratio "
        "(default 1; not with --synthetic_count / --synthetic_share)",
    )
    p.add_argument(
        "--synthetic_count",
        default=None,
        help="comma list of distinct synthetic pairs per row (e.g. 25,100,400), picked by "
        "--synthetic_select; more than a set holds is an error",
    )
    p.add_argument(
        "--synthetic_share",
        default=None,
        help="comma list of the synthetic fraction of every training batch, each in (0, 1) (e.g. "
        "0.25,0.5); default: each synthetic pair drawn as often as each real pair",
    )
    p.add_argument(
        "--num_good",
        type=int,
        default=None,
        help="good images read from the training side (default: all; 0: none, so no a+good row "
        "and copy-paste onto the real pairs)",
    )
    p.add_argument(
        "--with_good",
        type=int,
        default=1,
        help="1: synthetic rows d draw the good images too, as row a+good does (the (a) choice "
        "--tune makes)",
    )
    p.add_argument(
        "--copy_paste_target",
        default="good",
        choices=["good", "defective", "both"],
        help="baseline c pastes onto: good images (default), defective = the other real pairs "
        "(the pre-issue-20 c), both",
    )
    p.add_argument(
        "--copy_paste_blend",
        default="alpha",
        choices=["alpha", "poisson"],
        help="c: feathered alpha edge, or Poisson blending (source gradients, good image boundary)",
    )
    p.add_argument(
        "--copy_paste_feather",
        type=float,
        default=2.0,
        help="c: feather width in px at --resolution (the pasted margin around the region)",
    )
    p.add_argument(
        "--synthetic_select",
        default="balanced",
        choices=SELECTIONS,
        help="first: file order; defect: pairs holding a defect; balanced: defect pairs filling "
        "per-class quotas in proportion to the real training classes; scored: the same quotas "
        "filled with each class's best-scoring pairs (the sample score: how clearly the image "
        "shows its mask), for filtered against unfiltered sets; realistic: the same quotas "
        "filled with the pairs whose defects are nearest the real training pairs of their class "
        "in step (gray level against the surroundings) and texture",
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
        "batch_size, class_balance (default: the frozen defaults' grid); none: keep the "
        "segmenter settings given and tune the baselines only",
    )
    p.add_argument("--tune_folds", type=int, default=3, help="cross-validation folds for --tune")
    p.add_argument(
        "--tune_baseline_grid",
        help="baseline settings --tune tries with the same folds, \"key=v1,v2;...\" over with_good "
        "(a: 0 = row a, 1 = a+good), copy_paste_probability, copy_paste_blend, "
        "copy_paste_feather (c); default \"with_good=0,1;copy_paste_probability=0.5,1;"
        "copy_paste_blend=alpha,poisson;copy_paste_feather=2\"; none: skip",
    )
    p.add_argument(
        "--tuned",
        metavar="TUNE_JSON",
        help="take the settings a --tune run chose (its tune.json flags) as defaults; flags given "
        "here still win",
    )
    p.add_argument("--num_defect", type=int, default=None, help="number of defect classes K")
    p.add_argument("--classes", help="comma list of defect type names in class order (MVTec)")
    p.add_argument("--max_val", type=int, help="at most this many validation pairs per defect type")
    p.add_argument(
        "--copy_paste_probability",
        type=float,
        default=0.5,
        help="c / e: chance that a drawn sample gets one pasted defect region",
    )
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
    p.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="folder of finished segmenter trainings, keyed by everything that decides their "
        "result (default: OUT/runs; none: off): a re-run, or another run sharing the folder, "
        "trains only what is missing",
    )
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    args = p.parse_args(argv)
    if args.tuned:
        # Re-parse with the tuned flags as defaults, so flags given on the command line win.
        p.set_defaults(**_tuned_defaults(p, args.tuned))
        args = p.parse_args(argv)
    return args


def _tuned_defaults(parser, path):
    """Give {dest: value} of the flags a tune.json records (segmenter and baselines)."""
    import json
    import shlex

    try:
        with open(path) as f:
            record = json.load(f)
        base = (record.get("baselines") or {}).get("flags") or ""
        flags = shlex.split(record["flags"] + " " + base)
    except (OSError, ValueError, KeyError, TypeError) as e:
        parser.error(f"--tuned {path}: not a readable tune.json ({e})")
    known = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    out = {}
    for flag, value in zip(flags[::2], flags[1::2]):
        action = known.get(flag)
        if action is None:
            parser.error(f"--tuned {path}: unknown flag {flag}")
        out[action.dest] = action.type(value) if action.type else value
    return out


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
        seeds=EvalConfig.seeds if args.seeds is None else args.seeds,
        first_seed=args.first_seed,
        baselines=_baselines(args.baselines),
        regimes=tuple(r.strip() for r in args.regimes.split(",") if r.strip()),
        modes=tuple(args.modes.split(",")) if args.modes else None,
        synthetic_ratio=None if args.synthetic_ratio is None else _ratios(args.synthetic_ratio),
        synthetic_count=amount.parse_counts(args.synthetic_count),
        synthetic_share=amount.parse_shares(args.synthetic_share),
        num_good=args.num_good,
        with_good=bool(args.with_good),
        copy_paste_target=args.copy_paste_target,
        copy_paste_blend=args.copy_paste_blend,
        copy_paste_feather=args.copy_paste_feather,
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
        cache_dir=_cache_dir(args),
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
    for flag, given in (("--seeds", args.seeds is not None), ("--first_seed", args.first_seed)):
        if args.tune and given:
            raise EvaluationError(f"{flag}: --tune trains seed 0 on every fold; drop {flag}")
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
    if config.cache_dir:
        check_writable_folder(config.cache_dir, "--cache")
    if args.tune:
        base_grid = baseline_tune.parse_baseline_grid(args.tune_baseline_grid)
        record = tune.run_tuning(config, tune.parse_grid(args.tune_grid), args.tune_folds)
        record["baselines"] = baseline_tune.run_baseline_tuning(
            config, base_grid, args.tune_folds, segmenter=record["best"]["settings"]
        )
        paths = tune.write_tuning(record, args.out)
        best = record["best"]
        if best["mean"] is None:
            print("segmenter not tuned (--tune_grid none)")
        else:
            print(f"tuned: {record['flags']} (cross-validated mIoU w/o bg {best['mean']:.4f})")
        if record["baselines"]:
            print(f"tuned baselines: {record['baselines']['flags']}")
    else:
        result = run_evaluation(config)
        paths = write_report(result, args.out)
    logging.getLogger("evaluate").info("wrote %s", ", ".join(paths.values()))
    return 0


def _cache_dir(args):
    if args.cache is None:
        return os.path.join(args.out, "runs")
    return None if args.cache == "none" else args.cache


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
