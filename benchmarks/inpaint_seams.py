"""
How visible is the band of inpainted pairs, and how much do their images show their masks?

For each sample folder written by ``scripts/sample.py --mode inpaint`` prints: the number of pairs, the mean
and median score (``manifest.json``'s ``scores``: mask border contrast minus its chance level, gray levels),
the mean step across the band's border (``defect_gen.sampling.seam.seam_step``, gray levels) and the same
step measured on the good image itself (the level a seamless band would show).

    python benchmarks/inpaint_seams.py runs/inpaint_skip runs/inpaint_downscale runs/inpaint_raw
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.sampling.conditioning import default_band  # noqa: E402
from defect_gen.sampling.seam import disk_dilate, seam_step  # noqa: E402


def folder_figures(folder):
    """Give {count, score_mean, score_median, seam, natural} of an inpainted sample folder."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    band = manifest["generation"]["band"]
    records = manifest.get("samples") or manifest["selection"]["kept"]
    seams, natural = [], []
    for i, rec in enumerate(records[: manifest["num_samples"]]):
        image = np.asarray(Image.open(folder / "images" / f"{i:06d}.png").convert("RGB"))
        mask = np.asarray(Image.open(folder / "masks" / f"{i:06d}.png")) > 0
        good = Image.open(rec["good"]["path"]).convert("RGB")
        if good.size != image.shape[1::-1]:  # --size: resized as the sampler resized it
            good = good.resize(image.shape[1::-1], Image.BILINEAR)
        width = band if isinstance(band, int) else default_band(min(mask.shape))
        region = disk_dilate(torch.from_numpy(mask)[None], width)
        as_tensor = [torch.from_numpy(np.array(a)).permute(2, 0, 1)[None] for a in (image, good)]
        seams.append(float(seam_step(as_tensor[0], as_tensor[1], region)[0]))
        natural.append(float(seam_step(as_tensor[1], as_tensor[1], region)[0]))
    scores = [s for s in manifest.get("scores", []) if s is not None]
    return {
        "count": len(seams),
        "score_mean": float(np.mean(scores)) if scores else float("nan"),
        "score_median": float(np.median(scores)) if scores else float("nan"),
        "seam": float(np.mean(seams)),
        "natural": float(np.mean(natural)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", help="inpainted sample folders")
    args = p.parse_args()
    print("| folder | pairs | score mean | score median | band-border step | good image's own |")
    print("|---|---|---|---|---|---|")
    for folder in args.folders:
        f = folder_figures(folder)
        print(
            f"| {folder} | {f['count']} | {f['score_mean']:.1f} | {f['score_median']:.1f} | "
            f"{f['seam']:.2f} | {f['natural']:.2f} |"
        )


if __name__ == "__main__":
    main()
