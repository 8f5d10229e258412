"""Dataset folders, files, the torch Dataset, mask statistics and the procedural toy data."""
