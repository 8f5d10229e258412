"""
Does Defect-Gen's synthetic data help segmentation on a user's own data?

The package trains a compact segmentation network under four data regimes with one schedule and one
set of seeds — (a) real pairs, (b) real + classic augmentation, (c) real + copy-paste, (d) real +
synthetic pairs — validates each on held-out real pairs, and measures the synthetic set itself:
memorisation (near-copies of training images), diversity, mask statistics and, with user-supplied
weights, FID/KID. `runner.run_evaluation` does it all; `report.write_report` writes report.json /
report.md / report.png.
"""
