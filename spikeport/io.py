"""File helpers: every artifact appears whole or not at all, and spikeport replaces only what it wrote.

Files. `atomic_open` writes to a hidden temporary beside the file and renames it into place, so a
killed process never leaves a half-written file that looks complete, and an older file of the same
name stays intact until the new one is ready. Files are created with the user's umask, like any
other tool's. A write refused for lack of space (ENOSPC, EDQUOT) becomes one line naming the file
(`NoSpace`), whatever library was writing (see `_File`); the temporary is removed.

Folders. `replacing_folder` builds a folder (export/, report/) under a hidden name beside it and
swaps it into place when complete. It writes a marker into the folder listing every entry it holds
(`MARKER`), and replaces or deletes an existing folder only when that marker is there and the
folder holds nothing else: a folder the user made, or one a user's file or run was put into, is
refused in one line and nothing is deleted.

The swap is two renames (final -> .NAME.old-ID, .NAME.new-ID -> final); a process killed between
them leaves no `final`. `recover` repairs that on the next run, before anything else: it finishes
the swap (the new folder is complete, its marker is written last) or puts the old folder back, and
removes what killed runs left (hidden builds, old folders, temporary files). A temporary belongs to
a live process while that process holds an flock on it, so a concurrent run's temporaries are never
touched: only those whose lock can be taken, whose owner is dead, are removed.

`check_creatable` refuses an output folder that cannot be made before the work that would fill it
starts; `read_text` turns an unreadable input file into one line naming it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from spikeport.errors import UserError

MARKER = ".written-by-spikeport.json"  # in each folder spikeport replaces as a whole: what it wrote there
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_TOKEN = "[0-9a-f]{8}"


class NoSpace(UserError):
    """The disk (or the user's quota) was full while writing `path`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        super().__init__(f"no space left writing {self.path}")


def is_no_space(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _NO_SPACE


class _File(io.FileIO):
    """A file that, once the disk is full, takes every further write without writing it.

    The writer (h5py, torch's zip writer, numpy) then finishes as if all went well and
    `atomic_open` refuses the result in one line. Raising instead reaches the writers mid-way:
    h5py then fails again in its destructors and can crash the process (SIGSEGV), torch reports a
    RuntimeError of its own. A skipped write still moves the position, so the writer's seeks and
    reads stay consistent (what it reads back of the skipped part is zeros)."""

    out_of_space = False

    def write(self, data) -> int:
        if not self.out_of_space:
            try:
                return super().write(data)
            except OSError as e:
                if not is_no_space(e):
                    raise
                self.out_of_space = True
        size = memoryview(data).nbytes
        self.seek(size, os.SEEK_CUR)
        return size


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing ("w", "wb" or "w+b"); rename it to `path` on success."""
    path = _output_file(Path(path))
    make_folder(path.parent)
    _remove_abandoned(path.parent, rf"\.{re.escape(path.name)}\.{_TOKEN}\.tmp")
    fd, tmp = _locked_temporary(path)
    raw = _File(fd, "r+" if "+" in mode else "w")
    binary = io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
    f = binary if "b" in mode else io.TextIOWrapper(binary)
    try:
        yield f
        f.flush()
        if raw.out_of_space:
            raise NoSpace(path)
        os.fsync(raw.fileno())
        os.replace(tmp, path)  # still open and locked: no cleaner takes it for abandoned
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        with contextlib.suppress(OSError, ValueError):
            f.close()  # its unwritten buffer fails again: discarded
        raw.close()
        if raw.out_of_space or is_no_space(e):
            raise NoSpace(path) from None
        raise
    f.close()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_creatable(folder: str | os.PathLike) -> None:
    """Refuse, before any work, an output folder that cannot be created: its nearest existing
    ancestor must be a writable folder (not a regular file, not read-only), and no folder on the
    way may be a symbolic link to nothing."""
    folder = Path(folder)
    for p in [folder, *folder.parents]:
        if p.is_symlink() and not p.exists():
            raise UserError(f"{p}: is a symbolic link to {os.readlink(p)}, which does not exist")
        if p.exists():
            break
    if not p.is_dir():
        raise UserError(f"{p}: not a folder, so {folder} cannot be created")
    if not os.access(p, os.W_OK):
        raise UserError(f"{p}: not writable, so {folder} cannot be written")


def make_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` and its parents (checked as `check_creatable` does)."""
    folder = Path(folder)
    if folder.is_dir():
        return folder
    check_creatable(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if is_no_space(e):
            raise NoSpace(folder) from None
        raise UserError(f"{folder}: cannot create the folder ({e.strerror})") from None
    return folder


def check_file_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder or a symbolic link
    to nothing in its place, or a folder for it that cannot be created."""
    check_creatable(_output_file(Path(path)).parent)


def _output_file(path: Path) -> Path:
    """Where a file `path` is written: through a symbolic link to a file, never onto a folder."""
    if path.is_symlink():
        if not path.exists():
            raise UserError(f"{path}: is a symbolic link to {os.readlink(path)}, which does not exist")
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise UserError(f"{path}: is a folder, but a file must be written there")
    return path


# --- temporaries that belong to a live process while it holds their flock -----------------------


def _try_lock(fd: int) -> bool:
    """Take an exclusive flock on `fd` without waiting: False when a live process holds it. A file
    system without flock (some network mounts) counts as held: nothing is then removed as abandoned."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _still_named(fd: int, path: Path) -> bool:
    """Whether `path` is still the file or folder open as `fd` (a cleaner may have removed it)."""
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _locked_temporary(path: Path) -> tuple[int, Path]:
    """A new hidden file `.NAME.ID.tmp` beside `path`, open and locked by this process."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # the umask applies
        except FileExistsError:
            continue
        except OSError as e:
            raise NoSpace(path) if is_no_space(e) else UserError(f"{path}: cannot write ({e.strerror})") from None
        if _try_lock(fd) is not False and _still_named(fd, tmp):
            return fd, tmp
        os.close(fd)  # a cleaner took it in the moment before the lock: another name


def _locked_folder(final: Path) -> tuple[int, Path, str]:
    """A new hidden folder `.NAME.new-ID` beside `final`, open and locked by this process."""
    while True:
        token = secrets.token_hex(4)
        build = final.with_name(f".{final.name}.new-{token}")
        try:
            build.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise NoSpace(final) if is_no_space(e) else UserError(f"{final.parent}: cannot write ({e.strerror})") from None
        fd = os.open(build, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if _try_lock(fd) is not False and _still_named(fd, build):
            return fd, build, token
        os.close(fd)


@contextlib.contextmanager
def _abandoned(path: Path) -> Iterator[bool]:
    """Whether `path` (a temporary) was left by a dead process; its lock is held for the block."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        yield False
        return
    try:
        yield _try_lock(fd) is True and _still_named(fd, path)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _remove_abandoned(folder: Path, pattern: str) -> None:
    """Remove the temporaries in `folder` named `pattern` whose writer is dead."""
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if re.fullmatch(pattern, entry.name):
                with _abandoned(Path(entry.path)) as dead:
                    if dead:
                        _remove(Path(entry.path))


def is_locked(path: str | os.PathLike) -> bool:
    """Whether a live process holds the lock file `path` (see `holding_lock`); creates nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return _try_lock(fd) is False
    finally:
        os.close(fd)


@contextlib.contextmanager
def holding_lock(path: str | os.PathLike, busy: str) -> Iterator[None]:
    """Hold an flock on the file `path` (created, and removed at the end) for the block; a live
    process holding it already is UserError(`busy`). A killed holder's lock goes with it: the file
    it leaves is taken over."""
    path = Path(path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
        except OSError as e:
            raise NoSpace(path) if is_no_space(e) else UserError(f"{path}: cannot create the lock file ({e.strerror})") from None
        if _try_lock(fd) is False:
            os.close(fd)
            raise UserError(busy)
        if _still_named(fd, path):
            break
        os.close(fd)  # its last holder removed it meanwhile: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held, so no one locks the removed file in between
        os.close(fd)


# --- folders spikeport owns, and the swap that replaces one -------------------------------------


def _entries(folder: Path) -> list[str]:
    """Every file, folder and link under `folder`, relative, links not followed."""
    found = []
    for here, folders, files in os.walk(folder):
        for name in folders + files:
            found.append(str((Path(here) / name).relative_to(folder)))
    return sorted(found)


def _written(folder: Path) -> set[str] | None:
    """The entries the marker in `folder` says spikeport wrote; None when there is no readable marker."""
    try:
        data = json.loads((folder / MARKER).read_text())
        return set(data["entries"]) if isinstance(data.get("entries"), list) else None
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return None


def check_replaceable(folder: str | os.PathLike) -> None:
    """Refuse, before any work, to replace `folder` unless it is absent, empty, or a folder spikeport
    wrote that holds nothing else. An interrupted swap of `folder` is recovered first."""
    folder = Path(folder)
    recover(folder)
    if folder.is_symlink():
        raise UserError(f"{folder}: is a symbolic link; spikeport replaces only a folder it wrote itself")
    if not folder.exists():
        check_creatable(folder)
        return
    if not folder.is_dir():
        raise UserError(f"{folder}: is a file, not a folder spikeport wrote; move it away or choose another --out")
    if not any(folder.iterdir()):
        return  # an empty folder (made for the output, say): nothing of the user's to lose
    written = _written(folder)
    if written is None:
        raise UserError(f"{folder}: was not written by spikeport (it holds no {MARKER}); move it away or choose another --out")
    foreign = [p for p in _entries(folder) if p not in written and p != MARKER]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UserError(f"{folder}: holds {foreign[0]}{more}, which spikeport did not write; move it away or choose another --out")


def recover(final: str | os.PathLike) -> None:
    """Repair what a killed swap or build of `final` left: finish the swap when its new folder is
    complete, else put the old folder back; remove the hidden folders of dead runs."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    runs: dict[str, dict[str, Path]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(final.parent):
            match = re.fullmatch(rf"\.{re.escape(final.name)}\.(new|old)-({_TOKEN})", entry.name)
            if match and entry.is_dir(follow_symlinks=False):
                runs.setdefault(match[2], {})[match[1]] = Path(entry.path)
    for token in sorted(runs):
        new, old = runs[token].get("new"), runs[token].get("old")
        with _abandoned(new) if new else contextlib.nullcontext(True) as dead:
            if not dead:
                continue  # a live run is building or swapping it
            with contextlib.suppress(OSError):
                if not final.exists() and new and (new / MARKER).is_file():
                    os.rename(new, final)  # the swap was killed after its first rename: finish it
                    new = None
                elif not final.exists() and old:
                    os.rename(old, final)  # killed before the new folder was complete: the old one back
                    old = None
            for leftover in (new, old):
                if leftover and final.exists():
                    shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def replacing_folder(final: str | os.PathLike, what: str) -> Iterator[Path]:
    """Yield a new hidden folder beside `final` to fill; when the block ends, it replaces `final`
    (refused, before the block, when `final` is not a folder spikeport wrote, see `check_replaceable`).

    On any failure the new folder is removed and `final` stays as it was. A full disk anywhere in
    the block is one line naming the file under `final`'s name.
    """
    final = Path(final)
    check_replaceable(final)
    make_folder(final.parent)
    fd, build, token = _locked_folder(final)
    try:
        yield build
        write_json(build / MARKER, {"written_by": "spikeport", "what": what, "entries": [*_entries(build), MARKER]})
        check_replaceable(final)  # anything the user put there meanwhile stops the swap too
        _swap(build, final, token)
    except BaseException as e:
        shutil.rmtree(build, ignore_errors=True)
        if isinstance(e, NoSpace) and build in e.path.parents:
            raise NoSpace(final / e.path.relative_to(build)) from None
        if is_no_space(e):
            raise NoSpace(final) from None
        raise
    finally:
        os.close(fd)


def _swap(build: Path, final: Path, token: str) -> None:
    """Rename `build` to `final`; an existing `final` (checked replaceable) goes only after that."""
    old = final.with_name(f".{final.name}.old-{token}")
    if final.exists():
        os.rename(final, old)
    try:
        os.rename(build, final)  # a kill before this line leaves no `final`: `recover` finishes the swap
    except BaseException:
        if old.exists() and not final.exists():
            os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_text(path: str | os.PathLike) -> str:
    """A text file's contents; a missing, unreadable or binary file is a one-line UserError naming it."""
    path = Path(path)
    try:
        return path.read_text()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
