"""The project's on-disk cache: where built worlds and prepared models live, and how they get there.

Everything expensive (a toy world, a dequantised real model, an aligned real model) is built into a
temporary folder next to its final place and renamed into place only when complete, so an interrupted
build, a crash or a full disk never leaves a half-written folder that a later run mistakes for a
finished one.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "SAFETY_TRADEOFF_CACHE"


class CacheError(RuntimeError):
    """The cache cannot be used (not writable, not a directory, out of space); the message says how to fix it."""


def cache_root() -> Path:
    """`$SAFETY_TRADEOFF_CACHE`, else `~/.cache/safety_tradeoff`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "safety_tradeoff").expanduser()


def check_writable(root: Path, what: str) -> None:
    """Create `root` and prove a file can be written there, or raise a CacheError naming the fix."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise CacheError(f"{what} cache directory {root} is not writable ({err.strerror or err}); "
                         f"set {CACHE_ENV} to a writable directory") from None


_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def is_out_of_space(err: BaseException) -> bool:
    """Whether an error (or the error that caused it) is a full disk, a quota or a file-size limit."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return True
        if "No space left on device" in str(err) or "File too large" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _remove_orphans(final: Path) -> None:
    """Temporary folders of builds whose process is gone (killed before it could clean up)."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


@contextlib.contextmanager
def one_builder(final: Path) -> Iterator[None]:
    """Hold a lock file beside `final` while it is checked and built: processes that want the same entry
    at once (sweep workers, test workers, one per rank) build it once; the others wait and find it done."""
    from filelock import FileLock

    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{final.name}.lock")):
        yield


@contextlib.contextmanager
def building(final: Path, what: str, needs: str = "") -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` atomically.

    On any failure the temporary folder is removed and `final` is left as it was; a full disk becomes
    a CacheError that says how much space the build needs.
    """
    _remove_orphans(final)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():  # an incomplete entry, or another process finished first
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException as err:
        if isinstance(err, Exception) and is_out_of_space(err):
            raise CacheError(f"no space left while writing {what} to {final.parent}"
                             f"{f' (it needs about {needs})' if needs else ''}; free some space or set "
                             f"{CACHE_ENV} to a disk with room; nothing was left half-written") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
