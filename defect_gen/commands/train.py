"""
Train a Defect-Gen model (large or small, as the config says).

    python scripts/train.py --config configs/large.yaml --work_dir runs/large --data_dir DATA --num_defect 5
    mpirun -n 4 python scripts/train.py ...          # one process per GPU
    python scripts/train.py ... train.iterations=20 data.params.resolution=64   # YAML overrides

Overrides may stand anywhere on the command line. Channels set to `auto` follow num_defect (K + 4);
without --num_defect or data.params.num_defect, K is the number of classes the dataset shows.
"""

import sys

import blobfile as bf
import torch

from .. import dist_util
from ..data.dataset import DEFAULT_CROP_RANDOM, load_data
from ..data.files import read_masks
from ..data.layouts import find_good_pairs, find_pairs
from ..data.stats import mask_statistics
from ..errors import ConfigError, FolderError
from ..fileio import atomic_write_text
from ..limits import check_options
from ..lock import FolderLock, agree_on_error, check_writable_folder, remove_stale_temp_files
from ..nn import count_parameters
from ..training.checkpoints import latest_checkpoint, read_checkpoint
from ..training.config import (
    dump,
    fixed_on_resume,
    load_config,
    training_changes,
)
from ..training.factory import build_diffusion, build_model
from ..training.loop import TrainLoop
from .cli import add_device_argument, make_parser, run_cli, start_processes, str2bool


def parse_args(argv):
    parser = make_parser(__doc__)
    parser.add_argument("--config", required=True, help="YAML config (ours or the release's)")
    parser.add_argument("--work_dir", required=True, help="run folder: checkpoints, logs, previews")
    parser.add_argument("--data_dir", help="dataset folder (overrides data.params.dir)")
    parser.add_argument(
        "--num_defect", type=int, help="number of defect classes K; channels = K + 4"
    )
    parser.add_argument(
        "--resume", help="checkpoint to resume from (default: the run's latest, if any)"
    )
    parser.add_argument(
        "--seperate_channel_loss", "--separate_channel_loss", dest="seperate_channel_loss", type=str2bool,
        help="1: MSE on RGB + 0.2 x cross-entropy on the mask channels (x0 only)",
    )  # fmt: skip
    add_device_argument(parser)
    parser.add_argument(
        "--allow_config_change", action="store_true",
        help="resume although model-independent training settings (optimizer, diffusion, data, EMA...) "
        "differ from the checkpoint's: the new values are applied and logged",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="section.key=value YAML overrides")
    return parser.parse_intermixed_args(argv)


def warn(message):
    """Print one `warning:` line to stderr (rank 0 only)."""
    if dist_util.is_main():
        print(f"warning: {message}", file=sys.stderr, flush=True)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_resume(ckpt, resume, cfg, classes, allow):
    """
    Refuse a resume whose settings or classes differ from the checkpoint's (naming the keys) unless
    `allow`; settings the weights depend on are refused always. Give the changes allowed.
    """
    changes = training_changes(ckpt["config"], cfg)
    old_classes = ckpt.get("classes")
    if old_classes is not None and list(old_classes) != list(classes):
        changes.append(("classes (from the dataset)", list(old_classes), list(classes)))
    fixed = [c for c in changes if fixed_on_resume(c[0])]
    listed = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in (fixed or changes))
    if fixed:
        raise ConfigError(
            f"{resume}: the checkpoint's model cannot take these settings ({listed}); use another "
            f"--work_dir for a new model"
        )
    if changes and not allow:
        raise ConfigError(
            f"{resume}: the run was trained with other settings ({listed}); restore them, use another "
            f"--work_dir, or pass --allow_config_change to continue with the new ones"
        )
    return changes


def main(argv=None):
    args = parse_args(argv)
    check_options(args, "train")  # every number, before anything is read or written
    device, rank, world = start_processes(args.device)

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.params.dir={args.data_dir}")
    if args.seperate_channel_loss is not None:
        overrides.append(f"train.seperate_channel_loss={str(args.seperate_channel_loss).lower()}")
    cfg = load_config(args.config, overrides, num_defect=args.num_defect, need_num_defect=False)
    args.resolved_overrides = overrides
    data = cfg["data"]["params"]
    if not data["dir"]:
        raise ConfigError(f"{args.config}: no dataset: pass --data_dir or set data.params.dir")
    check_writable_folder(args.work_dir, "--work_dir")
    # a checkpoints/ folder that cannot be written would fail only at the first save
    check_writable_folder(bf.join(args.work_dir, "checkpoints"), "--work_dir checkpoints/")

    lock = FolderLock(args.work_dir, "--work_dir")
    try:
        if bf.isdir(args.work_dir):  # an existing run: locked before its checkpoints are read
            error = None
            if rank == 0:
                try:
                    lock.acquire()
                except FolderError as exc:
                    error = exc
            agree_on_error(error)
        _train(args, cfg, device, rank, world, lock)
    finally:
        lock.release()
    return 0


def _train(args, cfg, device, rank, world, lock):
    data = cfg["data"]["params"]
    resume = args.resume or latest_checkpoint(args.work_dir)
    overrides = args.resolved_overrides
    ckpt = read_checkpoint(resume) if resume else None  # a bad checkpoint stops here
    if ckpt is not None and data["num_defect"] is None:  # auto channels: a resume keeps its classes
        num_defect = ckpt["config"]["data"]["params"]["num_defect"]
        cfg = load_config(args.config, overrides, num_defect=num_defect)
        data = cfg["data"]["params"]
    iterations = cfg["train"]["iterations"]
    if ckpt is not None and iterations < int(ckpt["step"]):
        raise ConfigError(
            f"{resume}: the checkpoint is at step {ckpt['step']}, past train.iterations={iterations}; "
            f"raise train.iterations to train on (it counts from step 0)"
        )

    index = find_pairs(
        data["dir"], num_defect=data["num_defect"], classes=data["classes"],
        num_image_train=data["num_image_train"],
    )  # fmt: skip
    if data["num_defect"] is None:  # auto channels: as many classes as the dataset shows
        if not index.num_defect:
            raise ConfigError(
                f"{args.config}: cannot tell the number of defect classes of {data['dir']}: "
                f"pass --num_defect K"
            )
        cfg = load_config(args.config, overrides, num_defect=index.num_defect)
        data = cfg["data"]["params"]
    stats = mask_statistics(read_masks(index, data["num_defect"]), data["num_defect"])
    changes = (
        check_resume(ckpt, resume, cfg, index.classes, args.allow_config_change) if ckpt else []
    )
    empty = [
        f"{k}={index.classes[k - 1]}" for k in range(1, data["num_defect"] + 1)
        if stats["share_with_class"][k] == 0
    ]  # fmt: skip
    if empty:
        warn(
            f"num_defect={data['num_defect']} but class(es) {', '.join(empty)} occur in no training "
            f"mask of {data['dir']}: the model learns them as empty classes"
        )
    if ckpt is not None and iterations == int(ckpt["step"]):
        warn(f"{resume}: already at step {iterations} = train.iterations; nothing to train")
        return None
    train_index = index
    if data["num_good"]:
        train_index = index.subset(index.pairs + find_good_pairs(data["dir"], data["num_good"]))
    pairs_text = f"{len(index.pairs)} pairs"
    if len(train_index.pairs) > len(index.pairs):
        pairs_text += f" + {len(train_index.pairs) - len(index.pairs)} good images"
    crop_random = DEFAULT_CROP_RANDOM if data["crop_random"] is None else data["crop_random"]

    def make_data(start_step):
        return load_data(
            index=train_index, batch_size=cfg["data"]["bs_per_gpu"], resolution=data["resolution"],
            num_defect=data["num_defect"], keep_aspect=data["keep_aspect"], random_flip=data["random_flip"],
            crop=data["crop"], crop_random=crop_random,
            num_workers=cfg["data"]["num_workers"], shard=rank, num_shards=world,
            seed=cfg["train"]["seed"], start_step=start_step,
        )  # fmt: skip

    torch.manual_seed(cfg["train"]["seed"])  # the same initial weights on every rank and every run
    model = build_model(cfg, args.config)
    # Every check has passed: from here on the run folder is written.
    error = None
    if rank == 0:
        try:
            bf.makedirs(args.work_dir)
            lock.acquire()
        except FolderError as exc:
            error = exc
    agree_on_error(error)
    if rank == 0:
        for path in remove_stale_temp_files(args.work_dir):
            print(f"removed {path}, left by an interrupted save", flush=True)
        for key, old, new in changes:
            print(
                f"resume: {key} changed from {_short(old)} to {_short(new)} (--allow_config_change)"
            )
        atomic_write_text(bf.join(args.work_dir, "config.yaml"), dump(cfg))
        print(
            f"training {cfg['model']['target']} model: {count_parameters(model) / 1e6:.2f} M parameters, "
            f"{data['num_defect']} defect classes ({', '.join(index.classes)}), {pairs_text}, "
            f"{world} process(es) on {device.type}, work_dir {args.work_dir}",
            flush=True,
        )
    loop = TrainLoop(
        cfg=cfg, model=model, diffusion=build_diffusion(cfg), make_data=make_data, work_dir=args.work_dir,
        device=device, resume=resume, checkpoint=ckpt, data_stats=stats, classes=list(index.classes),
    )  # fmt: skip
    last = loop.run()
    if rank == 0:
        print(f"done: {loop.step} steps; checkpoint {last}", flush=True)
    dist_util.cleanup()
    return last


def entry():
    """The console command: user errors become one `error:` line (see defect_gen.commands.cli)."""
    sys.exit(run_cli(main))
