"""
How much synthetic data a row uses: the number of DISTINCT synthetic pairs (`--synthetic_count`)
and their SHARE of every training batch (`--synthetic_share`).

Without either, a row is sized as before by `--synthetic_ratio` r: round(r * N) pairs (N real
training pairs), each drawn as often as a real pair (batch_size * M / N synthetic draws per step).
With a count, the row uses that many pairs, picked by `--synthetic_select`. With a share s, every
step draws its real (and good) samples as regime (a) does and adds k synthetic ones so that the
synthetic samples are the fraction s of the batch: over the first S steps
floor(s / (1 - s) * other samples so far) synthetic samples in total (an integer schedule, so each
batch holds floor or ceil of the exact number and the run's share is exact up to one sample).
"""

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

from ..errors import EvaluationError

MAX_COUNT = 10**6


@dataclass(frozen=True)
class Amount:
    """One synthetic sizing of a row: a ratio (old style), or a count and / or a share."""

    ratio: Optional[float] = None
    count: Optional[int] = None
    share: Optional[float] = None

    def suffix(self):
        """Give the row-key suffix: "n=100,share=0.25" ("share=equal" without a share)."""
        n = "all" if self.count is None else str(self.count)
        s = "equal" if self.share is None else f"{self.share:g}"
        return f"n={n},share={s}"

    def want(self, num_real):
        """Give how many distinct synthetic pairs to select."""
        if self.count is not None:
            return self.count
        return max(1, int(round((1.0 if self.ratio is None else self.ratio) * num_real)))


def parse_counts(text):
    """Give a tuple of positive ints from "25,100,400"; EvaluationError naming --synthetic_count."""
    return _parse(text, "--synthetic_count", _count)


def parse_shares(text):
    """Give a tuple of floats in (0, 1) from "0.25,0.5"; EvaluationError naming the option."""
    return _parse(text, "--synthetic_share", _share)


def _count(v):
    value = int(v)
    if not 1 <= value <= MAX_COUNT:
        raise ValueError
    return value


def _share(v):
    value = float(v)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError
    return value


def _parse(text, option, convert):
    if text is None:
        return None
    if isinstance(text, (int, float)):
        items = [text]
    elif isinstance(text, str):
        items = [v.strip() for v in text.split(",") if v.strip()]
    else:
        items = list(text)
    if not items:
        raise EvaluationError(f"{option}: no value given")
    out = []
    for v in items:
        try:
            if isinstance(v, bool):
                raise ValueError
            if option == "--synthetic_count" and isinstance(v, float) and not v.is_integer():
                raise ValueError
            out.append(convert(v))
        except (TypeError, ValueError, OverflowError):
            what = "numbers in (0, 1)"
            if option == "--synthetic_count":
                what = "integers in 1..1000000"
            raise EvaluationError(
                f"{option}: {v!r} is not valid; give {what}, comma separated"
            ) from None
    return tuple(dict.fromkeys(out))


def amounts(config, ratios):
    """
    Give the list of Amount rows of a config: one per ratio (old style, no count / share given),
    else one per (count, share) combination (count None: the ratio's size; share None: equal
    exposure per pair).
    """
    counts = parse_counts(getattr(config, "synthetic_count", None))
    shares = parse_shares(getattr(config, "synthetic_share", None))
    if counts is None and shares is None:
        return [Amount(ratio=r) for r in ratios]
    # A count or share replaces the ratio (check_amounts refuses both): rows without a count take
    # the default ratio's size, N pairs (Amount.want).
    return [Amount(count=c, share=s) for c in counts or (None,) for s in shares or (None,)]


def check_amounts(config, ratios_given):
    """Raise EvaluationError for bad counts / shares, or for a share given with a ratio."""
    counts = parse_counts(getattr(config, "synthetic_count", None))
    shares = parse_shares(getattr(config, "synthetic_share", None))
    if (counts or shares) and not config.synthetic:
        option = "--synthetic_count" if counts else "--synthetic_share"
        raise EvaluationError(f"{option}: needs --synthetic")
    if shares and ratios_given:
        raise EvaluationError(
            "--synthetic_share replaces --synthetic_ratio (both set how often synthetic pairs are "
            "drawn); give one or the other"
        )
    if counts and ratios_given:
        raise EvaluationError(
            "--synthetic_count replaces --synthetic_ratio (both set how many synthetic pairs a row "
            "uses); give one or the other"
        )


def share_draws(done_other, done_synthetic, share):
    """
    Give how many synthetic samples the current step adds: floor(q * done_other) - done_synthetic
    with q = share / (1 - share) exactly (share as a fraction), where done_other counts the real
    and good samples drawn so far INCLUDING this step's and done_synthetic the synthetic ones
    before it.
    """
    q = Fraction(share).limit_denominator(10**6)
    q = q / (1 - q)
    return max(0, math.floor(q * done_other) - done_synthetic)
