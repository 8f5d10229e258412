"""
The small (patch-sized receptive field) model: SinDiffusion's UNet as the release configures it.

It reuses the blocks of :mod:`defect_gen.unet`: no attention, no middle block, and the first decoder block
takes the deepest encoder feature without concatenating a skip. Parameter names and shapes equal the release's
`models.unet.unet_receptive.UNetModel`, so its weights load with ``strict=True``.
"""

import copy

import torch
import torch.nn as nn

from .nn import GroupNorm32, conv_nd, linear, normalization, timestep_embedding, zero_module
from .unet import Downsample, ResBlock, TimestepEmbedSequential, Upsample


class PatchUNetModel(nn.Module):
    """
    A UNet whose receptive field is a patch, not the image (157 px for the shipped config).

    Takes the same parameters as :class:`defect_gen.unet.UNetModel` where they apply.
    `attention_resolutions`, `attention_downsample`, `num_heads*`, `num_head_channels` and
    `use_new_attention_order` are accepted for config compatibility with the release and unused: the
    model has no attention. The release's small model adds the embedding instead of scale-shift norm.
    """

    def __init__(
        self,
        image_size,
        in_channels,
        model_channels,
        out_channels,
        num_res_blocks,
        attention_resolutions=None,
        dropout=0.0,
        channel_mult=(1, 2, 4),
        conv_resample=True,
        dims=2,
        num_classes=None,
        use_checkpoint=False,
        num_heads=1,
        num_head_channels=-1,
        num_heads_upsample=-1,
        use_scale_shift_norm=False,
        resblock_updown=False,
        use_new_attention_order=False,
        attention_downsample=None,
        attention_backend="sdpa",
    ):
        super().__init__()
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.channel_mult = tuple(channel_mult)
        self.num_classes = num_classes

        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            linear(model_channels, time_embed_dim),
            nn.SiLU(),
            linear(time_embed_dim, time_embed_dim),
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        def res_block(ch, out_ch, **kw):
            return ResBlock(
                ch,
                time_embed_dim,
                dropout,
                out_channels=out_ch,
                dims=dims,
                use_checkpoint=use_checkpoint,
                use_scale_shift_norm=use_scale_shift_norm,
                **kw,
            )

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(conv_nd(dims, in_channels, ch, 3, padding=1))]
        )
        skip_chans = [ch]
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.input_blocks.append(
                    TimestepEmbedSequential(res_block(ch, int(mult * model_channels)))
                )
                ch = int(mult * model_channels)
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = (
                    res_block(ch, ch, down=True)
                    if resblock_updown
                    else Downsample(ch, conv_resample, dims=dims, out_channels=ch)
                )
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)

        # The deepest encoder output feeds the first decoder block directly, without a skip.
        skip_chans.pop()
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                skip = 0 if not self.output_blocks else skip_chans.pop()
                layers = [res_block(ch + skip, int(model_channels * mult))]
                ch = int(model_channels * mult)
                if level and i == num_res_blocks:
                    layers.append(
                        res_block(ch, ch, up=True)
                        if resblock_updown
                        else Upsample(ch, conv_resample, dims=dims, out_channels=ch)
                    )
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            zero_module(
                conv_nd(dims, int(channel_mult[0] * model_channels), out_channels, 3, padding=1)
            ),
        )

    def embed(self, timesteps, y=None):
        """Give the [N x 4 * model_channels] conditioning embedding of timesteps (and labels)."""
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass y if and only if the model is class-conditional")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        return emb

    def forward(self, x, timesteps, y=None):
        """
        :param x: an [N x C x H x W] Tensor of inputs.
        :param timesteps: a 1-D LongTensor of N original timesteps.
        :param y: an [N] Tensor of labels, if class-conditional.
        :return: an [N x out_channels x H x W] Tensor.
        """
        emb = self.embed(timesteps, y)
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        hs.pop()
        h = self.output_blocks[0](h, emb)
        for module in self.output_blocks[1:]:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h).type(x.dtype)


def receptive_field(model, image_size, *, seed=0):
    """
    Give the receptive field, in pixels, of `model`'s centre output pixel, measured with a gradient probe.

    The probe works on a copy: GroupNorm layers become the identity (their image-wide statistics would
    otherwise couple every pixel weakly) and all parameters are redrawn at random (zero-initialised output
    convolutions would make the gradient vanish). The input is zeros at `image_size` x `image_size`; the
    result is the side of the bounding box of input pixels with a nonzero gradient of the centre output
    pixel (all channels). A model with global attention gives the whole image.

    :return: (height, width) of the receptive field in pixels.
    """
    probe = copy.deepcopy(model).float().eval()
    for module in list(probe.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, GroupNorm32):
                setattr(module, child_name, nn.Identity())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in probe.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    x = torch.zeros(1, model.in_channels, image_size, image_size, requires_grad=True)
    out = probe(x, torch.zeros(1, dtype=torch.long))
    c = image_size // 2
    out[0, :, c, c].sum().backward()
    nonzero = x.grad[0].abs().sum(dim=0) > 0
    rows = torch.nonzero(nonzero.any(dim=1)).flatten()
    cols = torch.nonzero(nonzero.any(dim=0)).flatten()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
