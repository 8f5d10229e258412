"""
The large (global receptive field) model: the guided-diffusion UNet as the release configures it.

Parameter names and shapes equal the release's `models.unet.openaiunet.UNetModel`, so its weights load with
``strict=True``.
"""

from abc import abstractmethod

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .nn import avg_pool_nd, conv_nd, linear, normalization, timestep_embedding, zero_module

ATTENTION_BACKENDS = ("sdpa", "math")


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as a second argument."""

    @abstractmethod
    def forward(self, x, emb):
        """Apply the module to `x` given `emb` timestep embeddings."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """A sequential container that passes the timestep embedding to the children that take it."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """
    Nearest-neighbour 2x upsampling, optionally followed by a 3x3 convolution.

    :param channels: input channels.
    :param use_conv: whether a convolution follows the upsampling.
    """

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims
        if use_conv:
            self.conv = conv_nd(dims, self.channels, self.out_channels, 3, padding=1)

    def forward(self, x):
        if self.dims == 3:
            x = F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """
    2x downsampling by a strided 3x3 convolution or by average pooling.

    :param channels: input channels.
    :param use_conv: convolution (True) or average pooling (False).
    """

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        stride = 2 if dims != 3 else (1, 2, 2)
        if use_conv:
            self.op = conv_nd(dims, self.channels, self.out_channels, 3, stride=stride, padding=1)
        else:
            if self.channels != self.out_channels:
                raise ValueError("average-pool downsampling cannot change the channel count")
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x):
        return self.op(x)


class ResBlock(TimestepBlock):
    """
    A residual block conditioned on the timestep embedding.

    :param channels: input channels.
    :param emb_channels: timestep embedding width.
    :param dropout: dropout rate before the second convolution.
    :param out_channels: output channels (default: `channels`).
    :param use_conv: with a changed channel count, a 3x3 (True) rather than 1x1 skip convolution.
    :param use_scale_shift_norm: the embedding scales and shifts the second norm (FiLM) instead of
        being added.
    :param use_checkpoint: recompute activations in the backward pass to save memory.
    :param up: upsample inside the block.
    :param down: downsample inside the block.
    """

    def __init__(
        self, channels, emb_channels, dropout, out_channels=None, use_conv=False,
        use_scale_shift_norm=False, dims=2, use_checkpoint=False, up=False, down=False,
    ):  # fmt: skip
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint

        self.in_layers = nn.Sequential(
            normalization(channels),
            nn.SiLU(),
            conv_nd(dims, channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd = Upsample(channels, False, dims)
            self.x_upd = Upsample(channels, False, dims)
        elif down:
            self.h_upd = Downsample(channels, False, dims)
            self.x_upd = Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()

        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            linear(
                emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels
            ),
        )
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x, emb):
        """
        :param x: an [N x C x ...] Tensor of features.
        :param emb: an [N x emb_channels] Tensor of timestep embeddings.
        :return: an [N x out_channels x ...] Tensor.
        """
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x, emb):
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        emb_out = emb_out.reshape(*emb_out.shape, *([1] * (h.dim() - 2)))
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """
    Multi-head self-attention over all spatial positions, with a residual connection.

    The head split follows guided-diffusion: the legacy order reshapes qkv to heads first, the new order
    splits q, k, v first. Attention runs through `scaled_dot_product_attention` ("sdpa", default) or as an
    explicit softmax ("math", the release's way), which give the same numbers.

    :param channels: input channels.
    :param num_heads: heads when `num_head_channels` is -1.
    :param num_head_channels: channels per head, or -1 to use `num_heads`.
    """

    def __init__(
        self,
        channels,
        num_heads=1,
        num_head_channels=-1,
        use_checkpoint=False,
        use_new_attention_order=False,
        attention_backend="sdpa",
    ):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(
                    f"channels {channels} not divisible by num_head_channels {num_head_channels}"
                )
            self.num_heads = channels // num_head_channels
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}")
        self.use_checkpoint = use_checkpoint
        self.use_new_attention_order = use_new_attention_order
        self.attention_backend = attention_backend
        self.norm = normalization(channels)
        self.qkv = conv_nd(1, channels, channels * 3, 1)
        self.proj_out = zero_module(conv_nd(1, channels, channels, 1))

    def forward(self, x):
        """
        :param x: an [N x C x ...] Tensor.
        :return: an [N x C x ...] Tensor.
        """
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self._attention(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)

    def _attention(self, qkv):
        """
        :param qkv: an [N x (3 * H * C) x T] Tensor of queries, keys and values.
        :return: an [N x (H * C) x T] Tensor.
        """
        bs, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        if self.use_new_attention_order:
            q, k, v = (
                part.reshape(bs * self.num_heads, ch, length) for part in qkv.chunk(3, dim=1)
            )
        else:
            q, k, v = qkv.reshape(bs * self.num_heads, ch * 3, length).split(ch, dim=1)
        if self.attention_backend == "sdpa":
            a = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            )
            a = a.transpose(1, 2)
        else:
            scale = ch**-0.25  # split between q and k, as the release does, for fp16 headroom
            weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
            weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
            a = torch.einsum("bts,bcs->bct", weight, v)
        return a.reshape(bs, -1, length)


class UNetBase(nn.Module):
    """
    What the large and the small UNet share: the timestep (and label) embedding, the residual-block and
    resampling factories, the encoder, the output head and the forward pass; a subclass builds its
    decoder and says how it runs (:meth:`decode`).

    Modules are created in the order the release's classes create them, so state_dict keys keep its order.
    """

    def _init_trunk(
        self, *, image_size, in_channels, model_channels, out_channels, num_res_blocks, dropout,
        channel_mult, conv_resample, dims, num_classes, use_checkpoint, use_scale_shift_norm,
        resblock_updown,
    ):  # fmt: skip
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.channel_mult = tuple(channel_mult)
        self.num_classes = num_classes
        self._block_args = dict(
            dropout=dropout, dims=dims, use_checkpoint=use_checkpoint,
            use_scale_shift_norm=use_scale_shift_norm,
        )  # fmt: skip
        self._resample_args = dict(conv_resample=conv_resample, resblock_updown=resblock_updown)

        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            linear(model_channels, time_embed_dim),
            nn.SiLU(),
            linear(time_embed_dim, time_embed_dim),
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

    def _res_block(self, ch, out_ch, **kw):
        a = self._block_args
        return ResBlock(
            ch, self.model_channels * 4, a["dropout"], out_channels=out_ch, dims=a["dims"],
            use_checkpoint=a["use_checkpoint"], use_scale_shift_norm=a["use_scale_shift_norm"], **kw,
        )  # fmt: skip

    def _resample(self, ch, *, up):
        """Give a 2x up- or downsampling layer keeping `ch` channels."""
        if self._resample_args["resblock_updown"]:
            return self._res_block(ch, ch, up=up, down=not up)
        layer = Upsample if up else Downsample
        return layer(
            ch, self._resample_args["conv_resample"], dims=self._block_args["dims"], out_channels=ch
        )

    def _build_encoder(self, attention=None):
        """
        Create `input_blocks`; give (channels at the bottom, skip channels of every block).

        :param attention: None, or a callable (channels, downsample rate) -> an attention module or None.
        """
        dims = self._block_args["dims"]
        ch = int(self.channel_mult[0] * self.model_channels)
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(conv_nd(dims, self.in_channels, ch, 3, padding=1))]
        )
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                layers = [self._res_block(ch, int(mult * self.model_channels))]
                ch = int(mult * self.model_channels)
                attn = attention(ch, ds) if attention else None
                if attn is not None:
                    layers.append(attn)
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(self.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(self._resample(ch, up=False)))
                skip_chans.append(ch)
                ds *= 2
        return ch, skip_chans

    def _build_out(self, ch):
        dims = self._block_args["dims"]
        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            zero_module(
                conv_nd(
                    dims,
                    int(self.channel_mult[0] * self.model_channels),
                    self.out_channels,
                    3,
                    padding=1,
                )
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

    def encode(self, x, emb):
        """Give (deepest features, list of every encoder block's output) for input x."""
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        return h, hs

    def decode(self, h, hs, emb):
        """
        Give the decoder's features (before the output head) from the encoder's.

        :param h: the deepest encoder features.
        :param hs: every encoder block's output, deepest last; the decoder pops its skips from it.
        :param emb: the conditioning embedding.
        """
        raise NotImplementedError

    def forward(self, x, timesteps, y=None):
        """
        :param x: an [N x C x H x W] Tensor of inputs.
        :param timesteps: a 1-D LongTensor of N original timesteps.
        :param y: an [N] Tensor of labels, if class-conditional.
        :return: an [N x out_channels x H x W] Tensor.
        """
        emb = self.embed(timesteps, y)
        h, hs = self.encode(x, emb)
        return self.out(self.decode(h, hs, emb)).type(x.dtype)


class UNetModel(UNetBase):
    """
    The guided-diffusion UNet: the large, global-receptive-field model of Defect-Gen.

    :param image_size: training resolution (kept for the config; the model runs at any multiple of
        2 ** (len(channel_mult) - 1)).
    :param in_channels: input channels (num_defect + 4).
    :param model_channels: base width.
    :param out_channels: output channels (num_defect + 4).
    :param num_res_blocks: residual blocks per level.
    :param attention_downsample: downsample rates (1, 2, 4, ...) at which attention is used.
    :param dropout: dropout rate.
    :param channel_mult: width multiplier per level.
    :param conv_resample: learned convolutions when resampling.
    :param num_classes: if set, the model is class-conditional with this many classes (`y` argument).
    :param use_checkpoint: gradient checkpointing (less memory, more compute).
    :param num_heads: attention heads when `num_head_channels` is -1.
    :param num_head_channels: channels per attention head, or -1.
    :param num_heads_upsample: heads in the decoder (default: `num_heads`).
    :param use_scale_shift_norm: FiLM-like conditioning in the residual blocks (the release's default).
    :param resblock_updown: residual blocks for up/downsampling.
    :param use_new_attention_order: split q, k, v before heads.
    :param attention_backend: "sdpa" (fused) or "math" (explicit softmax, the release's computation).
    """

    def __init__(
        self,
        image_size,
        in_channels,
        model_channels,
        out_channels,
        num_res_blocks,
        attention_downsample=(8, 16, 32),
        dropout=0.0,
        channel_mult=(1, 2, 4, 8),
        conv_resample=True,
        dims=2,
        num_classes=None,
        use_checkpoint=False,
        num_heads=1,
        num_head_channels=-1,
        num_heads_upsample=-1,
        use_scale_shift_norm=True,
        resblock_updown=False,
        use_new_attention_order=False,
        attention_backend="sdpa",
    ):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self._init_trunk(
            image_size=image_size, in_channels=in_channels, model_channels=model_channels,
            out_channels=out_channels, num_res_blocks=num_res_blocks, dropout=dropout,
            channel_mult=channel_mult, conv_resample=conv_resample, dims=dims, num_classes=num_classes,
            use_checkpoint=use_checkpoint, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown,
        )  # fmt: skip
        self.attention_downsample = tuple(attention_downsample or ())

        def make_attention(ch, heads):
            return AttentionBlock(
                ch,
                num_heads=heads,
                num_head_channels=num_head_channels,
                use_checkpoint=use_checkpoint,
                use_new_attention_order=use_new_attention_order,
                attention_backend=attention_backend,
            )

        ch, skip_chans = self._build_encoder(
            lambda ch, ds: (
                make_attention(ch, num_heads) if ds in self.attention_downsample else None
            )
        )
        res_block = self._res_block
        self.middle_block = TimestepEmbedSequential(
            res_block(ch, ch), make_attention(ch, num_heads), res_block(ch, ch)
        )

        self.output_blocks = nn.ModuleList([])
        ds = 2 ** (len(channel_mult) - 1)
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res_block(ch + skip_chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in self.attention_downsample:
                    layers.append(make_attention(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(self._resample(ch, up=True))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self._build_out(ch)

    def decode(self, h, hs, emb):
        """The middle block, then every decoder block on its input concatenated with a skip."""
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return h
