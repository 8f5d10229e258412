"""Channel layout, one-hot encode/decode, palette and overlays."""

import numpy as np
import pytest
import torch

from defect_gen import masks
from defect_gen.data.stats import mask_statistics


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


def test_mask_statistics_against_hand_counts():
    a = np.zeros((2, 4), np.uint8)
    a[0, :2] = 1  # class 1 covers 2 of 8 pixels
    b = np.zeros((4, 4), np.uint8)
    b[:, 0] = 2  # class 2 covers 4 of 16 pixels; masks of different sizes
    c = np.zeros((2, 2), np.uint8)  # defect-free
    stats = mask_statistics(iter([a, b, c]), num_defect=3)
    assert stats["num_images"] == 3
    assert stats["share_with_class"] == pytest.approx([1.0, 1 / 3, 1 / 3, 0.0])
    assert stats["mean_area"] == pytest.approx(
        [(6 / 8 + 12 / 16 + 1) / 3, (2 / 8) / 3, (4 / 16) / 3, 0.0]
    )
    assert stats["mean_area_present"][1:] == [pytest.approx(0.25), pytest.approx(0.25), None]
    assert stats["defect_free"] == pytest.approx(1 / 3)
    assert sum(stats["mean_area"]) == pytest.approx(1.0)


def test_mask_statistics_refuses_values_outside_the_classes_and_handles_no_masks():
    with pytest.raises(ValueError, match="outside the classes 0..2"):
        mask_statistics([np.full((2, 2), 3)], num_defect=2)
    empty = mask_statistics([], num_defect=2)
    assert empty["num_images"] == 0 and empty["share_with_class"] == [None] * 3


def test_prior_correction_recovers_the_class_probabilities_a_weighted_cross_entropy_distorts():
    # Fit free logits to labels drawn from p with a class-weighted cross-entropy, as the mask loss
    # with train.mask_class_weight_power > 0 does: softmax(logits) lands on w*p (normalised), and the
    # corrected logits give p back.
    p = torch.tensor([0.90, 0.01, 0.04, 0.05])
    w = torch.tensor([1.0, 20.0, 5.0, 2.0])
    logits = torch.zeros(4, requires_grad=True)
    opt = torch.optim.LBFGS([logits], max_iter=200, line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        # The expectation over labels y ~ p of w_y * CE(logits, y).
        loss = -(p * w * torch.log_softmax(logits, 0)).sum()
        loss.backward()
        return loss

    opt.step(loss_fn)
    biased = torch.softmax(logits.detach(), 0)
    assert torch.allclose(biased, w * p / (w * p).sum(), atol=1e-4)

    class Constant(torch.nn.Module):
        def forward(self, x, t):
            rgb = torch.full((1, 3, 1, 1), 0.25)
            return torch.cat([rgb, logits.detach().view(1, 4, 1, 1)], dim=1)

    out = masks.MaskPriorCorrection(Constant(), w)(None, None)
    assert torch.equal(out[:, :3], torch.full((1, 3, 1, 1), 0.25))
    assert torch.allclose(torch.softmax(out[0, 3:, 0, 0], 0), p, atol=1e-4)
    # Half strength: the classes keep the square root of their weights.
    half = masks.MaskPriorCorrection(Constant(), w, strength=0.5)(None, None)
    expected = w.sqrt() * p / (w.sqrt() * p).sum()
    assert torch.allclose(torch.softmax(half[0, 3:, 0, 0], 0), expected, atol=1e-4)


def test_prior_correction_refuses_weights_that_do_not_fit():
    with pytest.raises(ValueError, match="positive"):
        masks.MaskPriorCorrection(torch.nn.Identity(), [1.0, 0.0])
    with pytest.raises(ValueError, match="strength"):
        masks.MaskPriorCorrection(torch.nn.Identity(), [1.0, 2.0], strength=1.5)

    class Out(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros(1, 3 + 3, 2, 2)

    with pytest.raises(ValueError, match="2 class weights for 3 mask channels"):
        masks.MaskPriorCorrection(Out(), [1.0, 2.0])(None, None)
