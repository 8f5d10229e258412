"""
Does Defect-Gen's synthetic data help segmentation on a user's own data?

The package trains a compact segmentation network on (a) real pairs, (b) real + classic
augmentation, (c) real + copy-paste, and per synthetic set (d) real + the set and (e) copy-paste +
the set, with one schedule, one set of seeds and equal exposure of every real pair; validates each
on held-out real pairs; compares each synthetic row with (a) and (c) by paired deltas with 95%
intervals; refuses synthetic sets whose generator saw a reported image (`guard`); and measures each
set: memorisation, diversity, mask statistics and, with user-supplied weights, FID/KID.
`runner.run_evaluation` does it all; `report.write_report` writes report.json / report.md /
report.png; `tune.run_tuning` picks segmenter settings on the training pairs alone.
"""
