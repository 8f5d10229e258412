"""
A compact UNet-like segmentation network for the downstream evaluation (GroupNorm, CPU-trainable).

Layout: a light full-resolution branch (one 3x3 conv, `full_width` channels), a stride-2 stem, a
UNet over half resolution (`width * channel_mult` channels per level, one residual block per level
and per decoder step), then the upsampled decoder output is added to the full-resolution branch and
passed through one 3x3 conv before the 1x1 classifier. Running the UNet at half resolution keeps the
cost at about 0.3 GMAC per 128 x 128 image while the full-resolution branch keeps small defects'
edges; at the default width (16, channel_mult 1, 2, 4, 8, 16, 16) it has about 5.05 M parameters.
Inputs of any size work: they are padded to a multiple of `2 ** len(channel_mult)` and the logits
cropped back.
"""

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_WIDTH = 16
DEFAULT_CHANNEL_MULT = (1, 2, 4, 8, 16, 16)


def _norm(channels):
    return nn.GroupNorm(min(8, channels), channels)


class ConvBlock(nn.Module):
    """Two 3x3 conv + GroupNorm, SiLU, residual: [N x C_in x H x W] -> [N x C_out x H x W]."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(out_channels),
        )
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x):
        return F.silu(self.body(x) + self.skip(x))


class SegNet(nn.Module):
    """
    UNet segmentation network giving per-pixel class logits.

    :param num_classes: output classes (num_defect + 1, background included).
    :param width: channels of the first half-resolution level.
    :param channel_mult: channel multiplier per level; each further level halves the resolution.
    :param full_width: channels of the full-resolution branch.
    """

    def __init__(
        self,
        *,
        num_classes,
        in_channels=3,
        width=DEFAULT_WIDTH,
        channel_mult=DEFAULT_CHANNEL_MULT,
        full_width=16,
    ):
        super().__init__()
        chans = [width * m for m in channel_mult]
        self.full = nn.Sequential(
            nn.Conv2d(in_channels, full_width, 3, padding=1, bias=False),
            _norm(full_width),
            nn.SiLU(),
        )
        self.stem = nn.Conv2d(full_width, chans[0], 2, stride=2)
        self.down = nn.ModuleList()
        prev = chans[0]
        for c in chans:
            self.down.append(ConvBlock(prev, c))
            prev = c
        self.up_proj = nn.ModuleList()
        self.up = nn.ModuleList()
        for c in reversed(chans[:-1]):
            self.up_proj.append(nn.Conv2d(prev, c, 1))
            self.up.append(ConvBlock(2 * c, c))
            prev = c
        self.out_proj = nn.Conv2d(prev, full_width, 1)
        self.out = nn.Sequential(
            nn.Conv2d(full_width, full_width, 3, padding=1, bias=False),
            _norm(full_width),
            nn.SiLU(),
            nn.Conv2d(full_width, num_classes, 1),
        )
        self.factor = 2 ** len(chans)

    def forward(self, x):
        """
        Give the class logits of a batch.

        :param x: an [N x in_channels x H x W] Tensor (images scaled to [-1, 1]).
        :return: an [N x num_classes x H x W] Tensor.
        """
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        if ph or pw:
            mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        full = self.full(x)
        x = self.stem(full)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for proj, block in zip(self.up_proj, self.up):
            x = proj(F.interpolate(x, scale_factor=2, mode="nearest"))
            x = block(torch.cat([x, skips.pop()], dim=1))
        x = self.out_proj(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.out(x + full)[..., :h, :w]
