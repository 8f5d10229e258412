"""
Test-only entry point: scripts/train.py with crash and NaN faults injected, for the subprocess tests.

DEFECT_GEN_FAULT names one fault and its step: "kill_after_save:STEP" (SIGKILL once checkpoint STEP is
written), "kill_during_save:STEP" (SIGKILL halfway through writing it) or "nan_loss_rankR:STEP" (rank R's
loss of step STEP is NaN). The faults are patched into the training loop here, never in the library.
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from defect_gen.commands.cli import run_cli  # noqa: E402
from defect_gen.commands.train import main  # noqa: E402
from defect_gen.training import loop  # noqa: E402

FAULT_ENV = "DEFECT_GEN_FAULT"


def _fault(kind, step):
    """Tell whether FAULT_ENV asks for `kind` at `step`."""
    return os.environ.get(FAULT_ENV, "") == f"{kind}:{step}"


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def install_faults():
    """Wrap the loop's checkpoint writing, pruning and loss check with the faults FAULT_ENV asks for."""
    write_checkpoint = loop.write_checkpoint
    prune = loop.TrainLoop._prune
    stop_if_not_finite = loop.TrainLoop._stop_if_not_finite

    def faulty_write_checkpoint(state, work_dir, step, **kwargs):
        if _fault("kill_during_save", step):
            kwargs["interrupt"] = _kill_self
        return write_checkpoint(state, work_dir, step, **kwargs)

    def faulty_prune(self):
        prune(self)  # the last thing TrainLoop.save does on rank 0 before its barrier
        if _fault("kill_after_save", self.step):
            _kill_self()

    def faulty_stop_if_not_finite(self, loss):
        if _fault(f"nan_loss_rank{self.rank}", self.step + 1):
            loss = loss * float("nan")
        return stop_if_not_finite(self, loss)

    loop.write_checkpoint = faulty_write_checkpoint
    loop.TrainLoop._prune = faulty_prune
    loop.TrainLoop._stop_if_not_finite = faulty_stop_if_not_finite


if __name__ == "__main__":
    install_faults()
    run_cli(main)
