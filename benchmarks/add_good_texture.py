"""
Write a copy of an inpainted sample folder with ``--good_texture true`` applied, without sampling again.

``scripts/sample.py --mode inpaint --good_texture true`` adds the good image's fine texture to the drawn
band on the pixels as they are written (``defect_gen.sampling.seam.add_good_texture``). This applies the
same step to a folder sampled without it: the band is rebuilt from each mask and the manifest's band
width, the good image is read and resized as the sampler read it. The images come out pixel for pixel as
sampling with the option gives them (``tests/test_inpaint_size.py`` checks it); masks are copied, the
scores recomputed and the manifest records the option. The source folder is only read.

    python benchmarks/add_good_texture.py runs/p128/inpaint128 runs/p128/inpaint128_texture
"""

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.fileio import write_png  # noqa: E402
from defect_gen.sampling.conditioning import default_band, read_good  # noqa: E402
from defect_gen.sampling.folder import read_manifest, write_grid, write_manifest  # noqa: E402
from defect_gen.sampling.score import sample_scores  # noqa: E402
from defect_gen.sampling.seam import add_good_texture, disk_dilate  # noqa: E402


def textured_copy(source, target):
    """Write `target` (a new folder) from the inpainted folder `source`; give the number of pairs."""
    source, target = Path(source), Path(target)
    manifest = read_manifest(str(source))
    if manifest is None:
        raise SystemExit(f"error: {source}: no manifest.json (not a sample folder)")
    params = manifest["generation"]
    if params.get("mode") != "inpaint" or params.get("good_texture"):
        raise SystemExit(f"error: {source}: not an inpainted folder sampled without --good_texture")
    if target.exists():
        raise SystemExit(f"error: {target}: exists; give a new folder")
    records = manifest.get("samples") or manifest["selection"]["kept"]
    count = manifest["num_samples"]
    size = params.get("size")
    size = None if size in (None, "native") else int(size)
    for sub in ("images", "masks", "masks_rgb"):
        (target / sub).mkdir(parents=True)
    for i, rec in enumerate(records[:count]):
        name = f"{i:06d}.png"
        shutil.copyfile(source / "masks" / name, target / "masks" / name)
        shutil.copyfile(source / "masks_rgb" / name, target / "masks_rgb" / name)
        image = np.asarray(Image.open(source / "images" / name).convert("RGB"))
        mask = np.asarray(Image.open(source / "masks" / name)) > 0
        good, _ = read_good(rec["good"]["path"], params["resolution"], False, size)
        band = params["band"] if isinstance(params["band"], int) else default_band(min(mask.shape))
        region = disk_dilate(torch.from_numpy(mask)[None], band)[0].numpy()
        write_png(str(target / "images" / name), add_good_texture(image, good, region))
    params["good_texture"] = True
    manifest["scores"] = sample_scores(str(target), range(count))
    write_manifest(str(target), manifest)
    write_grid(str(target), list(range(count)), params["num_defect"])
    return count


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("source", help="an inpainted sample folder (read only)")
    p.add_argument("target", help="the new folder to write")
    args = p.parse_args(argv)
    print(f"{textured_copy(args.source, args.target)} pairs written to {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
