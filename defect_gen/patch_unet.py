"""
The small (patch-sized receptive field) model: SinDiffusion's UNet as the release configures it.

It reuses the blocks of :mod:`defect_gen.unet`: no attention, no middle block, and the first decoder block
takes the deepest encoder feature without concatenating a skip. Parameter names and shapes equal the release's
`models.unet.unet_receptive.UNetModel`, so its weights load with ``strict=True``.
"""

import copy

import torch
import torch.nn as nn

from .nn import GroupNorm32
from .unet import TimestepEmbedSequential, UNetBase


class PatchUNetModel(UNetBase):
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
        self._init_trunk(
            image_size=image_size, in_channels=in_channels, model_channels=model_channels,
            out_channels=out_channels, num_res_blocks=num_res_blocks, dropout=dropout,
            channel_mult=channel_mult, conv_resample=conv_resample, dims=dims, num_classes=num_classes,
            use_checkpoint=use_checkpoint, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown,
        )  # fmt: skip
        ch, skip_chans = self._build_encoder()

        # The deepest encoder output feeds the first decoder block directly, without a skip.
        skip_chans.pop()
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                skip = skip_chans.pop() if self.output_blocks else 0
                layers = [self._res_block(ch + skip, int(model_channels * mult))]
                ch = int(model_channels * mult)
                if level and i == num_res_blocks:
                    layers.append(self._resample(ch, up=True))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self._build_out(ch)

    def decode(self, h, hs, emb):
        """No middle block; the first decoder block takes `h` alone (it is hs[-1]), the others a skip."""
        hs.pop()
        h = self.output_blocks[0](h, emb)
        for module in self.output_blocks[1:]:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return h


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
