"""
File writing that never leaves a truncated file behind, the PNG reader and writer, and checkpoint reading
with clear errors.

Paths go through blobfile, so they may be local or bucket URLs. Locally a file is written to a temporary
name in the same folder and renamed over the target; on object stores an upload becomes visible only when
complete, which gives the same guarantee. Every PNG the library writes (samples, grids, previews, figures,
reports, toy datasets, official-layout copies) goes through :func:`write_png`, and the evaluation reads
its synthetic folders with :func:`read_png`; input datasets (any image format) are read by
data.files and the evaluation guard with their own checks.
"""

import errno
import io
import os
import pickle
import zipfile

import blobfile as bf
import numpy as np
import torch
from PIL import Image

from .errors import CheckpointError, first_line


def is_local_path(path):
    """Tell whether `path` is on this machine's file system (not a URL such as gs://bucket/x)."""
    return "://" not in str(path)


def absolute_path(path):
    """Give a local path made absolute, a URL as it is (for records that must name the same file)."""
    return os.path.abspath(path) if is_local_path(path) else str(path)


def atomic_write_bytes(path, data, *, interrupt=None):
    """
    Write `data` to `path` so that readers see either the old file or the complete new one.

    :param interrupt: a test hook called once half of the bytes are on disk (to inject a crash mid-write).
    """
    path = str(path)
    if not is_local_path(path):
        with bf.BlobFile(path, "wb") as f:
            f.write(data)
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if interrupt is not None:
                f.write(data[: len(data) // 2])
                f.flush()
                interrupt()
            f.write(data[f.tell() :])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not exc.filename:
            # A write() error names no file; the user must learn which one did not fit.
            raise OSError(exc.errno, f"{exc.strerror} (not written)", path) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    """Write a text file atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def png_bytes(image):
    """
    Give the PNG encoding of an image.

    :param image: a uint8 [H x W] (grey) or [H x W x 3] (RGB) array, or a PIL image.
    """
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.ascontiguousarray(image))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_png(path, image):
    """Write an image (see :func:`png_bytes`) as a PNG file, atomically."""
    atomic_write_bytes(str(path), png_bytes(image))


def read_png(path):
    """
    Give the decoded PIL image of a PNG file (local or bucket path).

    :raises OSError, SyntaxError, ValueError: as PIL raises them for a missing, truncated or corrupt file.
    """
    with bf.BlobFile(str(path), "rb") as f:
        data = f.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def save_torch(obj, path, *, interrupt=None):
    """Serialise `obj` with torch.save and write it atomically to `path` (see atomic_write_bytes)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue(), interrupt=interrupt)


def load_torch(path, map_location="cpu"):
    """Give the object saved in a checkpoint file; CheckpointError for a missing or unreadable file."""
    path = str(path)
    if not bf.exists(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with bf.BlobFile(path, "rb") as f:
            data = f.read()
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
    except (
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {first_line(exc)})"
        ) from None
