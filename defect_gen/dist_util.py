"""
Process-group setup for mpirun (primary), torchrun, or a plain single process.

Under mpirun, rank 0 broadcasts its host and a free port over MPI and every rank joins a torch.distributed
group through env://, as guided-diffusion does. The local rank comes from MPI's shared-memory communicator,
so no GPU count per node is hard-coded. NCCL on CUDA, gloo on CPU.
"""

import logging
import os
import re
import socket

import torch
import torch.distributed as dist

from .errors import DeviceError

logger = logging.getLogger(__name__)

# Variables that MPICH, Open MPI, Intel MPI and PMIx set in each launched process.
_MPI_ENV = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")

_local_rank = 0


def launched_by_mpi():
    """Tell whether this process was started by an MPI launcher."""
    return any(k in os.environ for k in _MPI_ENV)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


_requested_index = None


def parse_device(device):
    """
    Give (use_cuda, index or None) for a --device value: None/"auto" (CUDA when available), "cpu",
    "cuda", "gpu" or "cuda:N"; DeviceError for other names or a CUDA device this machine lacks.
    """
    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        return torch.cuda.is_available(), None
    if name == "cpu":
        return False, None
    match = re.fullmatch(r"(cuda|gpu)(?::(\d+))?", name)
    if not match:
        raise DeviceError(f"--device {device}: not a device; use auto, cpu, cuda, cuda:N or gpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceError(f"--device {device}: no CUDA device is available on this machine")
    index = int(match.group(2)) if match.group(2) is not None else None
    if index is not None and index >= count:
        raise DeviceError(
            f"--device {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
        )
    return True, index


def setup_dist(device=None):
    """
    Join the process group if there is more than one process; give the torch.device to use.

    :param device: "cuda", "cuda:N", "gpu", "cpu" or None/"auto" (CUDA when available); a device that
        is not there is a DeviceError.
    """
    global _local_rank, _requested_index
    use_cuda, _requested_index = parse_device(device)
    if dist.is_initialized():
        return _device(use_cuda)

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun
        world_size = int(os.environ["WORLD_SIZE"])
        _local_rank = int(os.environ.get("LOCAL_RANK", 0))
    elif launched_by_mpi():
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        world_size = comm.Get_size()
        _local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        if world_size > 1:
            host = socket.gethostbyname(socket.getfqdn()) if comm.Get_rank() == 0 else None
            if os.environ.get("MASTER_ADDR") is None:
                os.environ["MASTER_ADDR"] = comm.bcast(host, root=0)
            if os.environ.get("MASTER_PORT") is None:
                os.environ["MASTER_PORT"] = str(
                    comm.bcast(_free_port() if comm.Get_rank() == 0 else None, root=0)
                )
            os.environ["RANK"] = str(comm.Get_rank())
            os.environ["WORLD_SIZE"] = str(world_size)
    else:
        world_size = 1

    if world_size > 1:
        if use_cuda:
            torch.cuda.set_device(_local_rank % torch.cuda.device_count())
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
        logger.info("joined process group: rank %d of %d", get_rank(), get_world_size())
    return _device(use_cuda)


def _device(use_cuda):
    if use_cuda:
        if _requested_index is not None and get_world_size() == 1:
            return torch.device("cuda", _requested_index)
        return torch.device("cuda", _local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def get_rank():
    """Give this process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size():
    """Give the number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main():
    """Tell whether this is rank 0, the one that logs and writes files."""
    return get_rank() == 0


def barrier():
    """Wait for every rank (no-op for one process)."""
    if dist.is_initialized():
        dist.barrier()


def all_mean(values, device):
    """Give the mean over ranks of a list of floats (or a 1-D tensor), as a list."""
    t = torch.as_tensor(values, dtype=torch.float64, device=device).clone()
    if dist.is_initialized():
        dist.all_reduce(t)
        t /= get_world_size()
    return t.tolist()


def all_gather_tensor(tensor):
    """Give the tensors of every rank (same shape on all) concatenated along dim 0, in rank order."""
    if not dist.is_initialized():
        return tensor
    out = torch.empty(
        (get_world_size() * tensor.shape[0], *tensor.shape[1:]),
        dtype=tensor.dtype, device=tensor.device,
    )  # fmt: skip
    dist.all_gather_into_tensor(out, tensor.contiguous())
    return out


def all_gather_object(obj):
    """Give the list of `obj` from every rank."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def check_in_sync(module):
    """Give True when the parameters are bitwise identical on every rank."""
    if not dist.is_initialized():
        return True
    flat = torch.cat([p.detach().flatten().float() for p in module.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor(float(torch.equal(flat, reference)), device=flat.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item())


def cleanup():
    """Leave the process group."""
    if dist.is_initialized():
        dist.destroy_process_group()
