"""Machine-wide leases on GPU slots, so that runners of different labs (one user's, or several users') never start
two jobs on one slot: one lock file per GPU and per slot in a directory every user of the machine shares.

The directory is `$LAB_GPU_LEASES`, else `/tmp/lab-gpu-leases` (made world-writable with the sticky bit, like /tmp
itself, whatever the umask). A GPU is keyed by its UUID when the machine says it, so two labs that number the same
GPU differently still meet on one file.

A lease is `flock` on open files: a job that has its GPU to itself holds `gpu-KEY.lock` exclusively; a job that
shares it (`jobs_per_gpu: N`) holds that file shared and one of `gpu-KEY.slot-I.lock` (I < N) exclusively. The
runner takes the lease before it claims the job; the job's supervisor inherits it with the fork and hands it on to
the program and its children, so the lease lasts exactly as long as any process of the job lives, and the kernel
drops it when the last one dies in whatever way (kill -9 included). Nothing is ever deleted: a lease file left by a
crashed machine is an unlocked file, which the next runner locks and overwrites.

Lease files are made mode 0666 (so another user's runner can write who holds it), opened without following
symlinks, and never created over a file someone else owns (`fs.protected_regular` refuses that in a sticky
directory): an existing file is opened as it is, read-only if need be (a lock needs no write access).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

ENV = "LAB_GPU_LEASES"
DEFAULT_DIR = "/tmp/lab-gpu-leases"
_KEY_RE = re.compile(r"[^A-Za-z0-9._-]")


class LeaseError(Exception):
    """The lease directory or a lease file cannot be used (one line; the GPUs concerned are not handed out)."""


def lease_dir(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(ENV) or DEFAULT_DIR)


def key_of(gpu: str) -> str:
    return _KEY_RE.sub("_", str(gpu))


def prepare(directory: Path) -> None:
    """Make the shared directory (mode 1777) unless it exists; LeaseError when it cannot be used."""
    try:
        os.mkdir(directory, 0o1777)
    except FileExistsError:
        pass
    except OSError as e:
        raise LeaseError(f"{directory}: cannot make the GPU lease directory ({e.strerror}); set {ENV} to a "
                         "directory every user of this machine can write") from None
    else:
        try:
            os.chmod(directory, 0o1777)  # mkdir's mode went through the umask
        except OSError:
            pass
    try:
        info = os.stat(directory)
    except OSError as e:
        raise LeaseError(f"{directory}: cannot use the GPU lease directory ({e.strerror})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise LeaseError(f"{directory}: not a directory; set {ENV} to a directory every user of this machine can write")


@dataclass
class Lease:
    """What a started job holds: open, locked lease files (closed in every process of the job: released)."""

    gpus: tuple[str, ...]
    fds: list[int] = field(default_factory=list)
    info_fds: list[int] = field(default_factory=list)  # the exclusively held ones, where who holds it is written

    def write_info(self, info: dict) -> None:
        data = (json.dumps(info, sort_keys=True) + "\n").encode()
        for fd in self.info_fds:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
            except OSError:
                pass  # a read-only lease file (another user's): the lock holds all the same

    def close(self) -> None:
        """Close this process's descriptors (the lease ends when no process of the job holds them any more)."""
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds, self.info_fds = [], []


def acquire(directory: Path, gpus: tuple[str, ...], keys: tuple[str, ...], per_gpu: int) -> Lease | None:
    """Lease one slot on each of `gpus` (their lease keys `keys`) without waiting: the Lease, or None when another
    job holds what is needed. LeaseError when a lease file or the directory cannot be used."""
    lease = Lease(gpus=tuple(gpus))
    try:
        for key in keys:
            if not _take(directory, key, per_gpu, lease):
                lease.close()
                return None
    except BaseException:
        lease.close()
        raise
    return lease


def _take(directory: Path, key: str, per_gpu: int, lease: Lease) -> bool:
    whole = _open(directory / f"gpu-{key_of(key)}.lock")
    if not _flock(whole, fcntl.LOCK_SH if per_gpu > 1 else fcntl.LOCK_EX):
        os.close(whole)
        return False
    lease.fds.append(whole)
    if per_gpu == 1:
        lease.info_fds.append(whole)
        return True
    for i in range(per_gpu):
        fd = _open(directory / f"gpu-{key_of(key)}.slot-{i}.lock")
        if _flock(fd, fcntl.LOCK_EX):
            lease.fds.append(fd)
            lease.info_fds.append(fd)
            return True
        os.close(fd)
    return False


def _flock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise LeaseError(f"cannot lock a GPU lease file ({e.strerror})") from None


def _open(path: Path) -> int:
    base = os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | base)
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | base, 0o666)
            except FileExistsError:
                continue  # another runner made it this instant: open theirs
            except OSError as e:
                if e.errno == errno.ENOENT:
                    prepare(path.parent)
                    continue
                raise LeaseError(f"{path.parent}: cannot make GPU lease files ({e.strerror}); set {ENV} to a "
                                 "directory every user of this machine can write") from None
            try:
                os.fchmod(fd, 0o666)  # the umask applied to the mode: let every user's runner write who holds it
            except OSError:
                pass
        except PermissionError:
            try:
                fd = os.open(path, os.O_RDONLY | base)
            except OSError as e:
                raise LeaseError(f"{path}: cannot open this GPU lease file ({e.strerror}); the GPU is not handed "
                                 "out until it is readable or removed") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise LeaseError(f"{path}: a symbolic link where a GPU lease file belongs; the GPU is not handed "
                                 "out until it is removed") from None
            raise LeaseError(f"{path}: cannot open this GPU lease file ({e.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LeaseError(f"{path}: not a regular file; the GPU is not handed out until it is removed")
        return fd
    raise LeaseError(f"{path}: cannot open this GPU lease file (it keeps appearing and disappearing)")


# -- who holds what ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    key: str  # the GPU's lease key
    slot: int | None  # None: the whole GPU
    info: dict  # what the holder wrote ({} when unreadable)


def holders(directory: Path, keys) -> list[Holder]:
    """The leases held now on the GPUs `keys` (any lab, any user): read from /proc/locks, without taking any lock
    (where /proc/locks does not show this directory's locks, by trying each lock for an instant)."""
    locked = _locked_inodes() if _proc_locks_work(directory) else None
    out = []
    for key in keys:
        k = key_of(key)
        whole = directory / f"gpu-{k}.lock"
        mode = _lock_mode(whole, locked)
        if mode == "WRITE":
            out.append(Holder(key, None, _read_info(whole)))
        elif mode == "READ":
            i = 0
            while True:
                slot = directory / f"gpu-{k}.slot-{i}.lock"
                if not slot.exists():
                    break
                if _lock_mode(slot, locked) == "WRITE":
                    out.append(Holder(key, i, _read_info(slot)))
                i += 1
    return out


def _read_info(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _locked_inodes() -> dict | None:
    """(device, inode) -> "READ" or "WRITE" for every flock on this machine, or None without /proc/locks."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    out: dict = {}
    for line in text.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF" ("->" marks a waiter, which holds nothing)
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[2] == "->":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            dev = os.makedev(int(major, 16), int(minor, 16))
            out[(dev, int(inode))] = "WRITE" if parts[3] == "WRITE" else out.get((dev, int(inode)), "READ")
        except ValueError:
            continue
    return out


_CHECKED: dict = {}


def _proc_locks_work(directory: Path) -> bool:
    """Whether /proc/locks names the files of this directory as stat() does (not so on some overlay filesystems
    and in some containers): checked once per directory with a shared lock on a file of its own."""
    if directory in _CHECKED:
        return _CHECKED[directory]
    ok = False
    try:
        fd = _open(directory / "check.lock")
        try:
            if _flock(fd, fcntl.LOCK_SH):
                st = os.fstat(fd)
                ok = (_locked_inodes() or {}).get((st.st_dev, st.st_ino)) is not None
        finally:
            os.close(fd)
    except (LeaseError, OSError):
        return False  # not cached: the directory may become usable
    _CHECKED[directory] = ok
    return ok


def _lock_mode(path: Path, locked: dict | None) -> str | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if locked is not None:
        return locked.get((st.st_dev, st.st_ino))
    # No /proc/locks: try the lock for an instant (a runner racing this look may then wait one round).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _flock(fd, fcntl.LOCK_EX):
            return None
        return "READ" if _flock(fd, fcntl.LOCK_SH) else "WRITE"
    finally:
        os.close(fd)
