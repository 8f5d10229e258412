"""
Selection at generation time (``scripts/sample.py --keep defect|balanced``).

Candidates j = 0, 1, 2, ... are the samples seed + j of the chosen mode. They are judged in this order by
their mask's main class (the defect class covering most pixels, 0 when none) and the accepted ones become
samples 0, 1, 2, ... of the folder:

- ``defect``: a candidate is kept when its mask holds a defect;
- ``balanced``: a candidate is kept when its main class c still has room in its quota q_c; the folder then
  holds exactly q_c samples of main class c. Quotas are given (``--quota Crack=10,Break=5``) or split
  ``--num_samples`` in proportion to the share of training masks holding each class (the checkpoints'
  data statistics; largest remainders, ties to the lower class).

The decision depends on the candidates' masks alone, taken in order, so it is the same for any batch size
and process count. The manifest's ``selection`` entry records the seed of every kept sample and every seed
skipped; a re-run regenerates missing samples from their recorded seeds and continues the selection.
"""

import numpy as np

from ..errors import ConfigError
from .conditioning import parse_counts

KEEP = ("all", "defect", "balanced")
MAX_CANDIDATES_FACTOR = 50  # default limit: this many candidates per sample asked for


def default_quotas(num_samples, shares):
    """
    Give [K] counts summing to `num_samples`, in proportion to `shares` (the share of training masks
    holding each defect class): largest remainders, ties to the lower class.
    """
    shares = np.asarray(shares, dtype=np.float64)
    if shares.sum() <= 0:
        shares = np.ones_like(shares)
    exact = num_samples * shares / shares.sum()
    counts = np.floor(exact).astype(int)
    order = sorted(range(len(shares)), key=lambda c: (-(exact[c] - counts[c]), c))
    for c in order[: num_samples - int(counts.sum())]:
        counts[c] += 1
    return counts.tolist()


def resolve_quotas(keep, quota, num_samples, classes, data_stats):
    """
    Give ({class name: count} or None, number of samples) of a --keep setting.

    :param quota: the --quota text or None.
    :param num_samples: --num_samples or None (then the quotas' sum, or 16).
    :param data_stats: the checkpoint's training mask statistics (``share_with_class``) or None.
    """
    if keep not in KEEP:
        raise ConfigError(f"--keep must be one of {', '.join(KEEP)}, got {keep!r}")
    if keep != "balanced":
        if quota is not None:
            raise ConfigError("--quota applies to --keep balanced only")
        return None, num_samples or 16
    if quota is not None:
        counts = parse_counts(quota, classes, "--quota")
        total = sum(counts.values())
        if num_samples is not None and num_samples != total:
            raise ConfigError(
                f"--num_samples {num_samples} differs from the sum of --quota ({total}); give one of them"
            )
        return {classes[c - 1]: n for c, n in counts.items()}, total
    num_samples = num_samples or 16
    shares = (data_stats or {}).get("share_with_class")
    if not shares or len(shares) != len(classes) + 1:
        raise ConfigError(
            "--keep balanced: the checkpoints hold no training mask statistics to set quotas from; "
            "pass --quota Name=N,..."
        )
    counts = default_quotas(num_samples, shares[1:])
    return {name: n for name, n in zip(classes, counts)}, num_samples


class Selection:
    """
    The state of a selection: kept candidates (by output index), skipped ones, the next to judge.

    ``record()`` gives the manifest entry; ``Selection.restore`` rebuilds it from one.
    """

    def __init__(self, keep, num_samples, classes, quotas=None, seed=0):
        self.keep = keep
        self.num_samples = int(num_samples)
        self.classes = list(classes)
        self.quotas = quotas  # {name: count} for balanced
        self.seed = int(seed)
        self.kept = []  # [(candidate j, main class id)] in output order
        self.skipped = []  # candidate js
        self.next = 0

    @property
    def done(self):
        return len(self.kept) >= self.num_samples

    def filled(self):
        counts = {name: 0 for name in self.classes}
        for _, c in self.kept:
            counts[self.classes[c - 1]] += 1
        return counts

    def offer(self, j, c):
        """
        Judge candidate j (it must be self.next) of main class `c` (see conditioning.main_class); give
        its output index, or None when it is skipped or the selection is done.
        """
        if self.done:
            return None
        if j != self.next:
            raise ValueError(f"candidate {j} judged out of order (expected {self.next})")
        self.next += 1
        ok = c > 0
        if ok and self.keep == "balanced":
            name = self.classes[c - 1]
            ok = self.filled()[name] < self.quotas.get(name, 0)
        if not ok:
            self.skipped.append(j)
            return None
        self.kept.append((j, c))
        return len(self.kept) - 1

    def shortfall(self):
        """Give a text of what is still missing."""
        if self.keep == "balanced":
            filled = self.filled()
            parts = [
                f"{name} {filled[name]} of {q}"
                for name, q in self.quotas.items()
                if filled[name] < q
            ]
            return ", ".join(parts)
        return f"{len(self.kept)} of {self.num_samples} samples with a defect"

    def record(self, sample_records=None):
        """Give the manifest's selection entry (seeds, not candidate numbers)."""
        return {
            "keep": self.keep,
            "quotas": self.quotas,
            "kept": [
                {
                    "index": i, "seed": self.seed + j, "class": self.classes[c - 1],
                    **((sample_records or {}).get(j) or {}),
                }  # fmt: skip
                for i, (j, c) in enumerate(self.kept)
            ],
            "skipped_seeds": [self.seed + j for j in self.skipped],
            "next_seed": self.seed + self.next,
        }

    @classmethod
    def restore(cls, entry, keep, num_samples, classes, quotas=None, seed=0):
        """Give the Selection a manifest entry describes (a fresh one when entry is None)."""
        sel = cls(keep, num_samples, classes, quotas, seed)
        if entry:
            sel.kept = [(k["seed"] - seed, classes.index(k["class"]) + 1) for k in entry["kept"]]
            sel.kept = sel.kept[: sel.num_samples]
            sel.skipped = [s - seed for s in entry["skipped_seeds"]]
            sel.next = entry["next_seed"] - seed
        return sel
