"""
The quick-start demo: toy defect data, a tiny large and a tiny small model, 16 generated image + mask pairs.

    python scripts/demo.py --out runs/demo          (what `make demo` runs)

Each stage is one of the project's own commands, printed before it runs, so the demo doubles as a worked
example. Re-running continues where it stopped: training resumes from its latest checkpoint and sampling
skips finished samples.
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from defect_gen.toy_data import defect_classes  # noqa: E402

TOY_CLASSES = defect_classes(4)


def run(cmd):
    """Run one of the project's commands, echoing it; stop the demo if it fails."""
    shown = " ".join(shlex.quote(str(c)) for c in cmd).replace(sys.executable, "python")
    print(f"\n$ {shown}", flush=True)
    started = time.time()
    # The tiny models gain little from a second thread and lose badly when another process shares the
    # cores (threads then wait on each other): one thread keeps the demo's time predictable.
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    code = subprocess.call([str(c) for c in cmd], cwd=REPO, env=env)
    if code:
        print(f"error: the command above failed with exit code {code}", file=sys.stderr)
        sys.exit(code)
    print(f"  ({time.time() - started:.0f} s)", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/demo", help="demo folder")
    parser.add_argument(
        "--iterations", type=int, default=None, help="training steps per model (default: config)"
    )
    parser.add_argument("--num_samples", type=int, default=16)
    parser.add_argument("--step_inference", type=int, default=500, help="switch timestep S")
    parser.add_argument("--timestep_respacing", default="100", help="sampling steps")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out
    data, samples = out / "data", out / "samples"
    py = sys.executable
    started = time.time()

    if not (data / "README.md").exists():
        run(
            [
                py,
                "scripts/make_toy_data.py",
                "--out",
                data,
                "--size",
                32,
                "--num_per_type",
                8,
                "--seed",
                0,
            ]
        )

    extra = [f"train.iterations={args.iterations}"] if args.iterations else []
    device = ["--device", args.device] if args.device else []
    for kind in ("large", "small"):
        run([py, "scripts/train.py", "--config", f"configs/tiny_{kind}.yaml", "--work_dir", out / kind,
             "--data_dir", data, *device, *extra, f"data.params.classes=[{','.join(TOY_CLASSES)}]"])  # fmt: skip

    run([py, "scripts/sample.py",
         "--large_recep", out / "large" / "checkpoints" / "latest",
         "--small_recep", out / "small" / "checkpoints" / "latest",
         "--step_inference", args.step_inference, "--timestep_respacing", args.timestep_respacing,
         "--num_samples", args.num_samples, "--sample_dir", samples, *device])  # fmt: skip
    shutil.copyfile(samples / "grid.png", out / "grid.png")

    rel = lambda p: p.relative_to(REPO) if p.is_relative_to(REPO) else p  # noqa: E731
    print(f"""
Demo finished in {(time.time() - started) / 60:.1f} min. Where everything is:
  {rel(data)}/            toy dataset (official layout: test/<type>/, converted_ground_truth/<type>/)
  {rel(out / 'large')}/           large model run: checkpoints/, samples/ (training previews), progress.csv
  {rel(out / 'small')}/           small model run
  {rel(samples)}/         generated pairs: images/, masks/ (class index), masks_rgb/, manifest.json
  {rel(out / 'grid.png')}     generated images with their masks overlaid

Next, on your own data (see README.md):
  python scripts/prepare_data.py /path/to/dataset
  sh train_large.sh --work_dir runs/large --data_dir /path/to/dataset --num_defect K
  sh train_small.sh --work_dir runs/small --data_dir /path/to/dataset --num_defect K
  sh inference.sh --large_recep runs/large/checkpoints/latest --small_recep runs/small/checkpoints/latest \\
      --step_inference 400 --num_samples 1000 --sample_dir runs/synthetic
""")


if __name__ == "__main__":
    main()
