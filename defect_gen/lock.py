"""
Folders that protect themselves: an exclusive lock per run or sample folder, checks that a folder can
be written before anything is, removal of the temporary files a killed save left, and clearing of a
sample folder that removes only the files the tool wrote.

A lock is a file `.defect_gen.lock` holding {"pid", "host", "started", "command"}, created with
O_EXCL so that two processes cannot both hold it. A lock whose process is gone (same host, no such
pid) is stale and taken over; a lock of another host cannot be checked and is refused with the file's
path, so the user can remove it once that run is known to be over.
"""

import json
import os
import re
import socket
import sys
import time

from . import dist_util
from .errors import FolderError
from .fileio import is_local_path

LOCK_NAME = ".defect_gen.lock"
# atomic_write_bytes writes `.NAME.tmpPID` next to NAME; these are the NAMEs of a run's checkpoints folder.
CHECKPOINT_TMP = re.compile(r"^\.(ckpt_\d+\.pt|latest)\.tmp\d+$")
RUN_TMP = re.compile(r"^\.(config\.yaml|progress\.csv|log\.jsonl)\.tmp\d+$")
PREVIEW_TMP = re.compile(r"^\.step_\d+\.png\.tmp\d+$")
SAMPLE_NAME = re.compile(r"^\d{6,}\.png$")
SAMPLE_TMP = re.compile(r"^\.\d{6,}\.png\.tmp\d+$")
SAMPLE_SUBDIRS = ("images", "masks", "masks_rgb")
SAMPLE_TOP = ("grid.png", "manifest.json")
SAMPLE_TOP_TMP = re.compile(r"^\.(grid\.png|manifest\.json)\.tmp\d+$")
# Without a parseable owner, a lock file younger than this may be one being written right now.
UNREADABLE_LOCK_GRACE_S = 60


# --------------------------------------------------------------------------------------------------
# Writability


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable_folder(path, what):
    """
    Raise FolderError unless `path` is a writable folder or can be created as one; creates nothing.

    :param what: how the user named it, e.g. "--work_dir".
    """
    path = str(path)
    if not is_local_path(path):
        return
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise FolderError(f"{what} {path}: is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise FolderError(f"{what} {path}: folder is not writable")
        return
    base = _nearest_existing(path)
    if not os.path.isdir(base):
        raise FolderError(f"{what} {path}: cannot be created: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise FolderError(f"{what} {path}: cannot be created: {base} is not writable")


def check_writable_file(path, what):
    """Raise FolderError unless the file `path` can be written (its folder exists or can be made)."""
    path = str(path)
    if not is_local_path(path):
        return
    if os.path.isdir(path):
        raise FolderError(f"{what} {path}: is a folder, not a file")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise FolderError(f"{what} {path}: file is not writable")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), f"{what} folder of")


# --------------------------------------------------------------------------------------------------
# Locks


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


class FolderLock:
    """
    An exclusive lock on a folder (run or sample folder); use as a context manager or acquire/release.

    :param folder: the folder; it must exist when the lock is acquired.
    :param what: how the user named the folder, for messages (e.g. "--work_dir").
    """

    def __init__(self, folder, what="folder"):
        self.folder = str(folder)
        self.what = what
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.held = False

    def _owner(self):
        """Give the lock file's owner dict, or None when it cannot be read."""
        try:
            with open(self.path, encoding="utf-8") as f:
                owner = json.load(f)
            return owner if isinstance(owner, dict) else None
        except (OSError, ValueError):
            return None

    def _stale(self, owner):
        if owner is None:
            try:
                age = time.time() - os.path.getmtime(self.path)
            except OSError:
                return True
            return age > UNREADABLE_LOCK_GRACE_S
        if owner.get("host") != socket.gethostname():
            return False
        pid = owner.get("pid")
        return not isinstance(pid, int) or not _pid_alive(pid)

    def acquire(self):
        """Take the lock; FolderError naming the holder when another live process has it."""
        if not is_local_path(self.folder) or self.held:
            return self
        record = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": " ".join(sys.argv),
            }
        )
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if self._stale(owner):
                    try:
                        os.remove(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                holder = (
                    f"process {owner.get('pid')} on {owner.get('host')} since {owner.get('started')}"
                    if owner
                    else "another process"
                )
                raise FolderError(
                    f"{self.what} {self.folder}: in use by {holder} (lock file {self.path}); wait for "
                    f"it to finish, or remove the lock file if that process is gone"
                ) from None
            except OSError as exc:
                raise FolderError(
                    f"{self.what} {self.folder}: cannot create the lock file ({exc.strerror})"
                ) from None
            try:
                os.write(fd, record.encode("utf-8"))
            finally:
                os.close(fd)
            self.held = True
            return self
        raise FolderError(f"{self.what} {self.folder}: could not take the lock {self.path}")

    def release(self):
        """Give the lock back (removes the lock file if it is still ours)."""
        if not self.held:
            return
        self.held = False
        owner = self._owner()
        if owner is None or owner.get("pid") == os.getpid():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# --------------------------------------------------------------------------------------------------
# Run folders


def remove_stale_temp_files(work_dir):
    """
    Remove the temporary files a killed save left in a run folder (only names of our own pattern);
    give the removed paths. Call it only while holding the run's lock.
    """
    removed = []
    for sub, pattern in (("checkpoints", CHECKPOINT_TMP), ("", RUN_TMP), ("samples", PREVIEW_TMP)):
        folder = os.path.join(str(work_dir), sub) if sub else str(work_dir)
        if not is_local_path(folder) or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if pattern.match(name) and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed


# --------------------------------------------------------------------------------------------------
# Sample folders


def _listed_files(manifest):
    """Give the relative paths a manifest lists as written by the tool (its optional "files" key)."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        return set()
    return {os.path.normpath(f) for f in files if isinstance(f, str)}


def sample_folder_files(sample_dir, manifest=None):
    """
    Give (ours, foreign): relative paths of the files in a sample folder that the tool wrote (sample
    PNGs by name pattern, grid.png, manifest.json, their temp files, files the manifest lists) and
    of every other file or folder. In a folder without manifest.json only temp files of the manifest
    and grid are ours: every other file is foreign, whatever its name.
    """
    sample_dir = str(sample_dir)
    ours, foreign = [], []
    if not os.path.isdir(sample_dir):
        return ours, foreign
    listed = _listed_files(manifest)
    # The manifest is written before the first sample: without one, nothing there is the tool's.
    owned = os.path.isfile(os.path.join(sample_dir, "manifest.json"))
    for name in sorted(os.listdir(sample_dir)):
        path = os.path.join(sample_dir, name)
        if name in SAMPLE_SUBDIRS and os.path.isdir(path):
            for sub in sorted(os.listdir(path)):
                rel = os.path.join(name, sub)
                is_file = os.path.isfile(os.path.join(path, sub))
                mine = owned and (SAMPLE_NAME.match(sub) or SAMPLE_TMP.match(sub) or rel in listed)
                (ours if is_file and mine else foreign).append(rel)
        elif name == LOCK_NAME:
            continue
        elif os.path.isfile(path) and (
            name == "manifest.json"
            or SAMPLE_TOP_TMP.match(name)
            or (owned and (name in SAMPLE_TOP or name in listed))
        ):
            ours.append(name)
        else:
            foreign.append(name + ("/" if os.path.isdir(path) else ""))
    return ours, foreign


def _names(paths, limit=5):
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def check_no_foreign_files(sample_dir, manifest=None, *, hint="use another --sample_dir"):
    """Raise FolderError naming the files in `sample_dir` that the tool did not write, if any."""
    _, foreign = sample_folder_files(sample_dir, manifest)
    if foreign:
        raise FolderError(
            f"{sample_dir}: holds files that Defect-Gen did not write ({_names(foreign)}); they are "
            f"never deleted: move them away or {hint}"
        )


def clear_sample_folder(sample_dir, manifest=None):
    """
    Remove the files the tool wrote in a sample folder (for --overwrite); refuse with FolderError,
    removing nothing, when any other file is there. Give the removed relative paths.
    """
    check_no_foreign_files(sample_dir, manifest)
    ours, _ = sample_folder_files(sample_dir, manifest)
    # The manifest last: a folder cleared half-way still says what it held.
    ours.sort(key=lambda rel: rel == "manifest.json")
    for rel in ours:
        try:
            os.remove(os.path.join(str(sample_dir), rel))
        except FileNotFoundError:
            pass
    return ours


def agree_on_error(error):
    """
    Raise rank 0's user error `error` (or None) on every rank, so that no rank waits alone in a later
    collective: the other ranks raise a FolderError with the same message.
    """
    messages = dist_util.all_gather_object(str(error) if error else None)
    if error is not None:
        raise error
    first = next((m for m in messages if m), None)
    if first:
        raise FolderError(first)
