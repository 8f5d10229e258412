"""
The command-line programs (console commands `defect-gen-train`, `defect-gen-sample`, `defect-gen-evaluate`,
`defect-gen-prepare`; `scripts/*.py` are thin wrappers around the same `main` functions).
"""
