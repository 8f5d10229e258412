"""
Train a Defect-Gen model (large or small, as the config says).

    python scripts/train.py --config configs/large.yaml --work_dir runs/large --data_dir DATA --num_defect 5
    mpirun -n 4 python scripts/train.py ...          # one process per GPU
    python scripts/train.py ... train.iterations=20 data.params.resolution=64   # YAML overrides

Overrides may stand anywhere on the command line. Channels set to `auto` follow num_defect (K + 4);
without --num_defect or data.params.num_defect, K is the number of classes the dataset shows.
"""

import argparse

import blobfile as bf
import torch

from .. import dist_util
from ..checkpoints import latest_checkpoint, read_checkpoint
from ..cli import run_cli, str2bool
from ..config import ConfigError, build_diffusion, build_model, dump, load_config
from ..fileio import atomic_write_text
from ..image_datasets import find_pairs, load_data, mask_statistics
from ..logger import configure_logging
from ..nn import count_parameters
from ..train_util import TrainLoop


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("overrides", nargs="*", help="section.key=value YAML overrides")
    return parser.parse_intermixed_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = dist_util.setup_dist(args.device)
    rank, world = dist_util.get_rank(), dist_util.get_world_size()
    configure_logging(rank)

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.params.dir={args.data_dir}")
    if args.seperate_channel_loss is not None:
        overrides.append(f"train.seperate_channel_loss={str(args.seperate_channel_loss).lower()}")
    cfg = load_config(args.config, overrides, num_defect=args.num_defect, need_num_defect=False)
    data = cfg["data"]["params"]
    if not data["dir"]:
        raise ConfigError(f"{args.config}: no dataset: pass --data_dir or set data.params.dir")

    resume = args.resume or latest_checkpoint(args.work_dir)
    if resume:
        ckpt = read_checkpoint(resume)  # a bad checkpoint stops here, before anything is written
        if data["num_defect"] is None:  # auto channels: a resumed run keeps its number of classes
            cfg = load_config(
                args.config, overrides, num_defect=ckpt["config"]["data"]["params"]["num_defect"]
            )
            data = cfg["data"]["params"]
        del ckpt

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
    stats = mask_statistics(index, num_defect=data["num_defect"])

    def make_data(start_step):
        return load_data(
            index=index, batch_size=cfg["data"]["bs_per_gpu"], resolution=data["resolution"],
            num_defect=data["num_defect"], keep_aspect=data["keep_aspect"], random_flip=data["random_flip"],
            num_workers=cfg["data"]["num_workers"], shard=rank, num_shards=world,
            seed=cfg["train"]["seed"], start_step=start_step,
        )  # fmt: skip

    torch.manual_seed(cfg["train"]["seed"])  # the same initial weights on every rank and every run
    model = build_model(cfg)
    if rank == 0:
        bf.makedirs(args.work_dir)
        atomic_write_text(bf.join(args.work_dir, "config.yaml"), dump(cfg))
        print(
            f"training {cfg['model']['target']} model: {count_parameters(model) / 1e6:.2f} M parameters, "
            f"{data['num_defect']} defect classes ({', '.join(index.classes)}), {len(index.pairs)} pairs, "
            f"{world} process(es) on {device.type}, work_dir {args.work_dir}",
            flush=True,
        )
    loop = TrainLoop(
        cfg=cfg, model=model, diffusion=build_diffusion(cfg), make_data=make_data, work_dir=args.work_dir,
        device=device, resume=resume, data_stats=stats, classes=list(index.classes),
    )  # fmt: skip
    last = loop.run()
    if rank == 0:
        print(f"done: {loop.step} steps; checkpoint {last}", flush=True)
    dist_util.cleanup()


def entry():
    """The console command: user errors become one `error:` line (see defect_gen.cli)."""
    run_cli(main)
