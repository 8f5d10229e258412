"""
TrainLoop: AdamW, EMA, autocast, gradient clipping, previews, atomic checkpoints and exact resume.

A run folder holds `config.yaml`, `progress.csv`, `log.jsonl`, `samples/step_NNNNNN.png` and
`checkpoints/ckpt_NNNNNN.pt` with a `checkpoints/latest` pointer. Every random draw of a step (timesteps,
noise, data order and augmentation) is a function of the seed, the rank and the step, or of RNG state saved
in the checkpoint, so stopping and resuming gives the parameters an uninterrupted run would have.
"""

import copy
import logging
import time

import blobfile as bf
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from .. import __version__, dist_util
from ..data.stats import mask_class_weights
from ..errors import CheckpointError, TrainingError, first_line
from ..fileio import write_png
from ..masks import (
    DEFAULT_CLASS_WEIGHT_CORRECTION,
    MaskPriorCorrection,
    decode,
    make_grid,
    overlay,
    split,
    to_uint8_rgb,
)
from ..nn import AUTOCAST_DTYPES, update_ema
from ..two_stage import sample_two_stage
from .checkpoints import (
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    read_weights,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from .factory import model_kind

logger = logging.getLogger(__name__)

DEFAULT_CLASS_WEIGHT_CAP = 10.0  # train.mask_class_weight_cap when not set


def ema_rate_at(rate, step, warmup):
    """
    Give the EMA rate of the update that follows optimizer step number `step` + 1 (`step` = the steps
    done before it: 0 for the first update).

    With `warmup` the rate is min(rate, (1 + step) / (10 + step)): 0.1 at step 0 (the EMA starts near
    the trained weights, not the random ones), 0.5 at step 8, 0.9 at 80, 0.99 at 890, 0.999 at 8990,
    then `rate`; so the EMA of a short run averages over roughly its last tenth instead of lagging
    behind from the initial weights. A pure function of the step, so resume stays exact.
    """
    return min(rate, (1 + step) / (10 + step)) if warmup else rate


class TrainLoop:
    """
    Train one Defect-Gen model (large or small) from a validated config.

    :param cfg: the resolved config (see :mod:`defect_gen.training.config`).
    :param model: the freshly built model (random weights).
    :param diffusion: the GaussianDiffusion.
    :param make_data: a callable start_step -> iterator of (batch, info), the rank's shard.
    :param work_dir: the run folder.
    :param device: the torch.device of this rank.
    :param resume: a checkpoint path to resume from; None resumes from the run's `latest` if present.
    :param checkpoint: the checkpoint dict of `resume` when the caller has read it already (read once).
    :param data_stats: statistics of the training masks, stored in checkpoints for the sampler's summary.
    :param classes: class names (class k = classes[k-1]), stored in checkpoints.
    """

    def __init__(
        self, *, cfg, model, diffusion, make_data, work_dir, device, resume=None, checkpoint=None,
        data_stats=None, classes=None,
    ):  # fmt: skip
        self.cfg = cfg
        self.train_cfg = cfg["train"]
        self.diffusion = diffusion
        self.work_dir = work_dir
        self.device = device
        self.rank = dist_util.get_rank()
        self.world_size = dist_util.get_world_size()
        self.data_stats = data_stats
        self.classes = classes
        self.written = []  # checkpoint names this run wrote, oldest first: the only ones pruned
        self.autocast_dtype = AUTOCAST_DTYPES[self.train_cfg["precision"]]
        if self.autocast_dtype is torch.bfloat16 and device.type == "cpu":
            logger.info("bf16 autocast on CPU: expect it to be slower than fp32 on most CPUs")

        self.model = model.to(device)
        if self.train_cfg["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        opt = cfg["optimizer"]["params"]
        fused = opt["fused"] if opt["fused"] is not None else device.type == "cuda"
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"],
            betas=tuple(opt["betas"]), fused=bool(fused),
        )  # fmt: skip
        self.scaler = torch.amp.GradScaler(
            device.type, enabled=self.train_cfg["precision"] == "fp16"
        )
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.train_cfg["seed"] * 1000003 + self.rank)
        torch.manual_seed(self.train_cfg["seed"] * 1000003 + self.rank)
        self.step = 0
        self.mask_class_weights = None
        power = self.train_cfg["mask_class_weight_power"]
        if power:
            if not data_stats or "mean_area" not in data_stats:
                raise ValueError(
                    "train.mask_class_weight_power > 0 needs the training mask statistics"
                )
            cap = self.train_cfg["mask_class_weight_cap"] or DEFAULT_CLASS_WEIGHT_CAP
            self.mask_class_weights = mask_class_weights(data_stats["mean_area"], power, cap)

        resume = resume or latest_checkpoint(work_dir)
        if resume:
            self._resume(resume, checkpoint)
        elif cfg["model"]["ckpt"]:
            self._init_from(cfg["model"]["ckpt"])
        # The loss's per-class weights (the checkpoint's on a resume) as a device tensor, made once.
        self._mask_weight_tensor = None
        if self.mask_class_weights is not None:
            self._mask_weight_tensor = torch.tensor(
                self.mask_class_weights, dtype=torch.float32, device=self.device
            )

        self.ddp = None
        if self.world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DDP(self.model, device_ids=ids, output_device=ids[0] if ids else None)
        forward = self.ddp or self.model
        self.forward = torch.compile(forward) if self.train_cfg["compile"] else forward
        self.data = make_data(self.step)
        self.writer = None

    # ----------------------------------------------------------------------------------------------
    def _resume(self, path, ckpt=None):
        ckpt = ckpt if ckpt is not None else read_checkpoint(path)
        ours, theirs = self.cfg["model"]["params"], ckpt["config"]["model"]["params"]
        if ours != theirs or model_kind(self.cfg) != model_kind(ckpt["config"]):
            raise CheckpointError(
                f"{path}: trained with model {model_kind(ckpt['config'])} {theirs}, but the config "
                f"asks for {model_kind(self.cfg)} {ours}"
            )
        self.model.load_state_dict(ckpt["model"], strict=True)
        self.ema.load_state_dict(ckpt["ema"], strict=True)
        self.opt.load_state_dict(ckpt["optimizer"])
        _apply_optimizer_settings(self.opt, self.cfg["optimizer"]["params"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt.get("rng")
        if rng is not None:
            state = rng[self.rank] if isinstance(rng, list) and self.rank < len(rng) else None
            if state is not None:
                set_rng_state(state, self.generator)
            elif self.rank:
                logger.warning("no RNG state saved for rank %d: it is re-seeded", self.rank)
        self.step = int(ckpt["step"])
        stored = ckpt.get("mask_class_weights")
        if self.mask_class_weights is not None and stored is not None:
            # The weights the run started with: a resumed run trains exactly as an uninterrupted one.
            if list(stored) != list(self.mask_class_weights):
                logger.info("mask class weights from the checkpoint: %s", stored)
            self.mask_class_weights = list(stored)
        logger.info("resumed from %s at step %d", path, self.step)

    def _init_from(self, path):
        """Start from the weights of a checkpoint (ours or the release's {model, ema, optimizer})."""
        state, ema_state = read_weights(path)
        try:
            self.model.load_state_dict(state, strict=True)
            self.ema.load_state_dict(ema_state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path}: weights do not fit the configured model ({first_line(exc)})"
            ) from None
        logger.info("initialised weights from %s", path)

    # ----------------------------------------------------------------------------------------------
    def run(self):
        """Train until `train.iterations` steps; give the path of the last checkpoint."""
        iterations = self.train_cfg["iterations"]
        main = dist_util.is_main()
        if main:
            from ..logger import MetricsWriter

            self.writer = MetricsWriter(self.work_dir)
            self.writer.event(
                "start", step=self.step, world_size=self.world_size, version=__version__
            )
        bar = tqdm(
            total=iterations, initial=self.step, disable=not main, dynamic_ncols=True, desc="train"
        )
        window = _Window()
        last_ckpt = latest_checkpoint(self.work_dir)
        self.model.train()
        try:
            while self.step < iterations:
                batch, info = next(self.data)
                if window.first:
                    self._log_first_batch(info)
                started = time.perf_counter()
                stats = self._train_step(batch)
                self.step += 1
                window.add(stats, batch.shape[0] * self.world_size, time.perf_counter() - started)
                bar.update(1)
                if self.step % self.train_cfg["log_interval"] == 0 or self.step == iterations:
                    row = window.flush(self.device)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
                    self._log(row)
                if self.train_cfg["max_images"] and (
                    self.step % self.train_cfg["log_image_interval"] == 0 or self.step == iterations
                ):
                    self.preview()
                if self.step % self.train_cfg["save_ckpt_interval"] == 0 or self.step == iterations:
                    last_ckpt = self.save()
        finally:
            bar.close()
        if not dist_util.check_in_sync(self.model):
            raise TrainingError("parameters differ between ranks at the end of training")
        if main:
            self.writer.event("end", step=self.step, ranks_in_sync=True)
            self.writer.close()
        return last_ckpt

    def _train_step(self, batch):
        batch = batch.to(self.device, non_blocking=True)
        if self.train_cfg["channels_last"]:
            batch = batch.contiguous(memory_format=torch.channels_last)
        n = batch.shape[0]
        t = torch.randint(
            0, self.diffusion.num_timesteps, (n,), device=self.device, generator=self.generator
        )
        noise = torch.randn(batch.shape, device=self.device, generator=self.generator)
        with torch.autocast(
            self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            losses = self.diffusion.training_losses(
                self.forward, batch, t, noise, mask_class_weights=self._mask_weight_tensor
            )
        loss = losses["loss"].mean()
        self._stop_if_not_finite(loss)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        clip = self.train_cfg["grad_clip"]
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), clip if clip else float("inf")
        )
        self.scaler.step(self.opt)
        self.scaler.update()
        rate = ema_rate_at(self.train_cfg["ema_rate"], self.step, self.train_cfg["ema_warmup"])
        update_ema(self.ema.parameters(), self.model.parameters(), rate=rate)
        for b_ema, b in zip(self.ema.buffers(), self.model.buffers()):
            b_ema.copy_(b)

        # Device tensors only: the host waits for them at log_interval (see _Window.flush).
        return {
            "scalars": torch.stack(
                [loss.detach(), losses["loss_rgb"].mean().detach(),
                 losses["loss_mask"].mean().detach(), grad_norm.detach()]
            ).float(),
            "quartile": t * 4 // self.diffusion.num_timesteps,
            "per_sample": losses["loss"].detach().float(),
        }  # fmt: skip

    def _stop_if_not_finite(self, loss):
        """
        Raise the same TrainingError on every rank when the loss is not finite on any rank.

        The ranks exchange their losses before the backward pass, whose gradient all-reduce would
        otherwise wait forever for a rank that stopped. This is the step's one host sync.
        """
        losses = dist_util.all_gather_tensor(loss.detach().float().reshape(1))
        if bool(torch.isfinite(losses).all()):
            return
        values = losses.tolist()
        bad = ", ".join(f"{value} on rank {rank}" for rank, value in enumerate(values))
        if self.world_size == 1:
            bad = str(values[0])
        latest = latest_checkpoint(self.work_dir)
        raise TrainingError(
            f"non-finite loss ({bad}) at step {self.step + 1}; stopped without saving. "
            f"Last checkpoint: {latest or 'none'}. Lower the learning rate or use precision fp32/bf16."
        )

    def _log_first_batch(self, info):
        """Record which samples each rank drew first (shows that ranks read different shards)."""
        indices = info.get("index") if isinstance(info, dict) else None
        indices = indices.tolist() if torch.is_tensor(indices) else indices
        gathered = dist_util.all_gather_object(indices)
        if dist_util.is_main():
            self.writer.event("first_batch", step=self.step, indices=gathered)

    def _log(self, row):
        row["lr"] = self.opt.param_groups[0]["lr"]
        if dist_util.is_main():
            self.writer.write(self.step, row)
            logger.info(
                "step %d  loss %.4f (rgb %.4f, mask %.4f)  grad %.3f  %.1f img/s",
                self.step, row["loss"], row["loss_rgb"], row["loss_mask"], row["grad_norm"], row["img_per_s"],
            )  # fmt: skip

    # ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self):
        """Write samples/step_NNNNNN.png: EMA samples with a short respaced sampler, images over overlays."""
        if not dist_util.is_main():
            dist_util.barrier()
            return
        n = self.train_cfg["max_images"]
        res = self.cfg["data"]["params"]["resolution"]
        channels = self.cfg["model"]["params"]["in_channels"]
        gens = [torch.Generator().manual_seed(i) for i in range(n)]  # same noise at every preview
        model = self.ema
        if self.mask_class_weights is not None and self.diffusion.mask_logits:
            # As scripts/sample.py draws them by default (see masks.MaskPriorCorrection).
            model = MaskPriorCorrection(
                self.ema, self.mask_class_weights, DEFAULT_CLASS_WEIGHT_CORRECTION
            ).to(self.device)
        x = sample_two_stage(
            self.diffusion, model, model, (n, channels, res, res), 0,
            timestep_respacing=self.train_cfg["preview_respacing"], generator=gens,
            autocast_dtype=self.autocast_dtype,
        )  # fmt: skip
        save_preview(x, bf.join(self.work_dir, "samples", f"step_{self.step:06d}.png"))
        dist_util.barrier()

    def save(self):
        """Write checkpoints/ckpt_NNNNNN.pt atomically, then point `latest` at it; give its path."""
        rng = dist_util.all_gather_object(rng_state(self.generator))
        if not dist_util.is_main():
            dist_util.barrier()
            return None
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "config": self.cfg,
            "rng": rng,
            "kind": model_kind(self.cfg),
            "classes": self.classes,
            "data_stats": self.data_stats,
            "mask_class_weights": self.mask_class_weights,
            "world_size": self.world_size,
            "version": __version__,
        }
        path = write_checkpoint(state, self.work_dir, self.step)
        self.written.append(bf.basename(path))  # only these may be pruned
        self.writer.event("checkpoint", step=self.step, path=path)
        self._prune()
        dist_util.barrier()
        return path

    def _prune(self):
        prune_checkpoints(self.work_dir, self.train_cfg["keep_checkpoints"], self.written)


def _apply_optimizer_settings(opt, params):
    """Set the configured lr, weight decay and betas on a loaded optimizer (its state keeps the rest)."""
    for group in opt.param_groups:
        group["lr"] = params["lr"]
        group["weight_decay"] = params["weight_decay"]
        group["betas"] = tuple(params["betas"])


class _Window:
    """Running sums of step statistics between two log lines, kept on the device until flushed."""

    KEYS = ("loss", "loss_rgb", "loss_mask", "grad_norm")

    def __init__(self):
        self.first = True
        self._reset()

    def _reset(self):
        self.sums, self.count, self.images, self.seconds = None, 0, 0, 0.0
        self.quartile_sum = self.quartile_count = None

    def add(self, stats, images, seconds):
        self.first = False
        scalars, quartile, per_sample = stats["scalars"], stats["quartile"], stats["per_sample"]
        if self.sums is None:
            self.sums = torch.zeros_like(scalars, dtype=torch.float64)
            self.quartile_sum = torch.zeros(4, dtype=torch.float64, device=scalars.device)
            self.quartile_count = torch.zeros(4, dtype=torch.float64, device=scalars.device)
        self.sums += scalars
        self.quartile_sum.index_add_(0, quartile, per_sample.double())
        self.quartile_count.index_add_(
            0, quartile, torch.ones_like(per_sample, dtype=torch.float64)
        )
        self.count += 1
        self.images += images
        self.seconds += seconds

    def flush(self, device):
        local = torch.cat([self.sums / self.count, self.quartile_sum, self.quartile_count])
        mean = dist_util.all_mean(local, device)
        row = dict(zip(self.KEYS, mean[:4]))
        for q in range(4):
            count = mean[8 + q]
            row[f"loss_q{q}"] = mean[4 + q] / count if count else float("nan")
        row["img_per_s"] = self.images / self.seconds if self.seconds else float("nan")
        self._reset()
        return row


def save_preview(x, path):
    """Write a grid of samples: each image next to its mask overlay (rows of image, overlay pairs)."""
    rgb, _ = split(x)
    images = to_uint8_rgb(rgb)
    index = decode(x).cpu().numpy()
    num_classes = x.shape[1] - 3
    tiles = []
    for img, idx in zip(images, index):
        tiles += [img, overlay(img, idx, alpha=0.6, num_classes=max(num_classes, 11))]
    grid = make_grid(tiles, ncol=min(len(tiles), 8), min_tile=96)
    write_png(path, grid)
