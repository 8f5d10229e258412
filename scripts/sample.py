"""
Generate defective images with their masks: the large model for t >= S, the small one for t < S.

    python scripts/sample.py --large_recep L.pt --small_recep S.pt --step_inference 400 --sample_dir out
    mpirun -n 4 python scripts/sample.py ...           # sample i goes to rank i % 4
    python scripts/sample.py ... --large_recep_config large_recep.yml --small_recep_config small_recep.yml
                                                        # the release's checkpoints ({model, ema, optimizer})

Writes images/, masks/ (class index), masks_rgb/, grid.png and manifest.json into --sample_dir. Sample i
comes from seed + i, whatever the batch size or process count. Re-running the same command generates only
the missing samples; other generation parameters into the same folder are refused (unless --overwrite).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The code lives in defect_gen.commands (console command defect-gen-*); the shell wrappers run this.
from defect_gen.cli import run_cli  # noqa: E402
from defect_gen.commands.sample import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    run_cli(main)
