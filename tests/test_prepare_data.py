"""scripts/prepare_data.py run as a user runs it: summary, problems, exit codes, official-layout export."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import load_script, run_command, shared_path
from PIL import Image

from defect_gen.data.files import read_pair
from defect_gen.data.layouts import find_pairs

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"


def main(capsys, *args):
    """Run the script's main() in this process (fast); give (exit code, stdout, stderr)."""
    code = run_command(load_script("prepare_data").main, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run(*args, cwd):
    """Run the script as a user does: a fresh process, no PYTHONPATH, another working folder."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def make_mvtec(root, types=("scratch", "crack"), n=3):
    """An MVTec-layout folder: type t, image i holds grey 20*i+10 and a box mask of 2*(i+1) x 4 px."""
    for t in types:
        for i in range(n):
            save(root / "test" / t / f"{i:03d}.png", np.full((10, 8), 20 * i + 10))
            mask = np.zeros((10, 8))
            mask[: 2 * (i + 1), :4] = 255
            save(root / "ground_truth" / t / f"{i:03d}_mask.png", mask)
    save(root / "test" / "good" / "000.png", np.zeros((10, 8)))
    return root


def test_summary(tmp_path, capsys):
    root = make_mvtec(tmp_path / "data")
    code, out, err = main(capsys, root, "--num_image_train", 2, "--classes", "scratch,crack")
    assert code == 0, err
    assert "layout: mvtec" in out
    assert "classes: 1=scratch, 2=crack" in out
    # type, class id, images, selected, mean defect area %: boxes of 8 and 16 px out of 80
    assert "scratch" in out and "crack" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["scratch"][1:] == ["1", "3", "2", "15.000"]
    assert lines["crack"][1:] == ["2", "3", "2", "15.000"]
    assert lines["total"][1:] == ["6", "4"]
    assert "problems: none" in out


def test_write_official_round_trip(tmp_path, capsys):
    root = make_mvtec(tmp_path / "data")
    out_dir = tmp_path / "official"
    result = run(root, "--num_image_train", 2, "--write_official", out_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 4 pairs" in result.stdout
    source = find_pairs(root, num_image_train=2)
    written = find_pairs(out_dir)
    assert written.layout == "official"
    assert written.num_defect == 2
    assert [(p.defect_type, p.class_id) for p in written.pairs] == [
        (p.defect_type, p.class_id) for p in source.pairs
    ]
    for a, b in zip(source.pairs, written.pairs):
        rgb_a, mask_a = read_pair(a, source)
        rgb_b, mask_b = read_pair(b, written)
        np.testing.assert_array_equal(mask_a, mask_b)
        np.testing.assert_array_equal(rgb_a, rgb_b)
        assert Image.open(b.image).mode == "RGB" and Image.open(b.mask).mode == "L"
    # a second export into the now non-empty folder is refused, nothing overwritten
    code, _, err = main(capsys, root, "--write_official", out_dir)
    assert code == 2
    assert err.startswith("error: ") and str(out_dir) in err
    assert len(find_pairs(out_dir).pairs) == 4


def test_broken_folder_lists_every_problem(tmp_path):
    root = make_mvtec(tmp_path / "data")
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    (root / "test" / "scratch" / "002.png").write_bytes(b"broken")
    out_dir = tmp_path / "official"
    result = run(root, "--write_official", out_dir, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 2
    assert any(str(root / "test" / "crack" / "001.png") in p for p in problems)
    assert any(str(root / "test" / "scratch" / "002.png") in p for p in problems)
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert "layout: mvtec" in result.stdout  # the summary of what is fine still comes
    assert not out_dir.exists()


def test_bad_arguments_and_missing_folder(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code, _, err = main(capsys, missing)
    assert code == 2 and err.splitlines()[-1].startswith(f"error: {missing}")
    code, _, err = main(capsys, make_mvtec(tmp_path / "data"), "--num_image_train", 0)
    assert code == 2 and err == (
        "error: --num_image_train must be an integer in [1, 1000000000], got 0 (command line)\n"
    )


def test_magnetic_tile_dev_summary(capsys):
    root = shared_path("data", "magnetic_tile_dev")
    code, out, err = main(capsys, root, "--num_image_train", 5)
    assert code == 0, err
    assert "classes: 1=Blowhole, 2=Break, 3=Crack, 4=Fray, 5=Uneven" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for k, name in enumerate(["Blowhole", "Break", "Crack", "Fray", "Uneven"], 1):
        assert lines[name][1:4] == [str(k), "15", "5"]
    assert lines["total"][1:] == ["75", "25"]
