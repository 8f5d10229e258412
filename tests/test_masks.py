"""Channel layout, one-hot encode/decode, palette and overlays."""

import numpy as np
import pytest
import torch

from defect_gen import masks


def test_channel_contract():
    assert masks.num_channels(5) == 9
    assert masks.num_defect_from_channels(9) == 5
    with pytest.raises(ValueError, match="6 .*num_defect=5 needs 9"):
        masks.check_channels(6, 5)


def test_encode_decode_round_trip():
    index = torch.randint(0, 6, (3, 7, 9), generator=torch.Generator().manual_seed(0))
    onehot = masks.encode(index, 5)
    assert onehot.shape == (3, 6, 7, 9)
    assert set(onehot.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(onehot.sum(1), torch.ones(3, 7, 9))
    x = torch.cat([torch.rand(3, 3, 7, 9), onehot], dim=1)
    assert torch.equal(masks.decode(x), index)


def test_encode_refuses_out_of_range_values():
    with pytest.raises(ValueError, match="0..2"):
        masks.encode(torch.tensor([[0, 3]]), 2)


def test_decode_equals_softmax_then_argmax():
    x = torch.randn(4, 9, 8, 8, generator=torch.Generator().manual_seed(1))
    release = torch.softmax(x[:, 3:], dim=1).argmax(dim=1)
    assert torch.equal(masks.decode(x), release)


def test_palette_starts_with_release_colours_and_extends_distinctly():
    pal = masks.palette(40)
    assert [tuple(c) for c in pal[:11]] == list(masks.RELEASE_PALETTE)
    assert len({tuple(c) for c in pal}) == 40
    assert np.array_equal(masks.palette(40), pal)


def test_overlay_tints_only_defect_pixels():
    image = np.full((4, 4, 3), 100, np.uint8)
    index = np.zeros((4, 4), np.int64)
    index[1, 2] = 3
    out = masks.overlay(image, index, alpha=0.5)
    assert np.array_equal(out[index == 0], image[index == 0])
    assert tuple(out[1, 2]) == (178, 50, 50)  # halfway to red (255, 0, 0)
