"""`competition pack ENTRY --out FILE.zip [--model RUN/model]`: an entry folder as a code
submission.

The zip holds the entry's regular files at its top level (entry.py, config.yaml, its own
modules and weights), relative paths, nothing the participant did not write: no
`__pycache__`, `*.pyc` or hidden files and folders (`.git`), and no old `model/` folder. A
fitted model (`competition run`'s `DIR/runs/ENTRY-TIME/model/`, written by the entry's
`save`) goes in as `model/`, which the harness hands to the entry's `load` instead of calling
`fit`. Symlinks are refused (a zip holds regular files only, and a link could reach outside
the folder). The same folder always gives the same bytes (fixed timestamps and modes, sorted
names): the board treats an identical file as a duplicate.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from competition.entries import defines, supported_tasks
from competition.errors import CompetitionError

MIB = 1024 * 1024
MAX_FILES = 2000
DEFAULT_MAX_MB = 200.0  # the competition's default upload size (rules.max_submission_mb)
MODEL_DIR = "model"  # where the harness looks for a carried model
_STAMP = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: no clock in the bytes
_MODE = (stat.S_IFREG | 0o644) << 16  # a regular file, whatever the umask made it here
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackReport:
    """What was packed: the zip, its member names, its size and the files' own sizes."""

    out: Path
    names: tuple[str, ...]
    size: int  # bytes of the zip (what an upload counts)
    unpacked: int  # the files' bytes added up
    model: Path | None  # the folder packed as model/

    @property
    def files(self) -> int:
        return len(self.names)


def pack_entry(folder: Path, out: Path, model: Path | None = None, *,
               max_mb: float = DEFAULT_MAX_MB, max_files: int = MAX_FILES) -> PackReport:
    """Zip the entry `folder` (and `model` as `model/`) into `out`; refused with a
    CompetitionError (nothing written) where it is no entry, holds a symlink, passes
    `max_files` files or would make a zip above `max_mb` MiB."""
    folder, out = Path(folder), Path(out)
    _check_entry(folder)
    skip = {out.resolve()}  # a zip written into the folder is not packed into the next one
    members = dict(_regular_files(folder, folder, skip, drop_model=True))
    if model is not None:
        model = Path(model)
        _check_model(folder, model)
        members.update((f"{MODEL_DIR}/{name}", path)
                       for name, path in _regular_files(model, model, skip, drop_model=False))
    if len(members) > max_files:
        raise CompetitionError(f"{folder}: {len(members)} files to pack; a code submission "
                               f"holds at most {max_files}")
    names = tuple(sorted(members))
    size = _write_zip(out, [(name, members[name]) for name in names], int(max_mb * MIB))
    return PackReport(out, names, size, sum(members[n].stat().st_size for n in names), model)


def _check_entry(folder: Path) -> None:
    if not folder.is_dir():
        raise CompetitionError(f"{folder}: not a folder (an entry is a folder with entry.py "
                               "and config.yaml)")
    if not (folder / "entry.py").is_file():
        raise CompetitionError(f"{folder}: no entry.py (an entry defines fit and predict)")
    supported_tasks(folder)  # config.yaml with its tasks: list, or a ConfigError


def _check_model(folder: Path, model: Path) -> None:
    if not model.is_dir():
        raise CompetitionError(f"--model {model}: not a folder (a run's model/ folder, e.g. "
                               "DIR/runs/ENTRY-TIME/model)")
    if not defines(folder, "load"):
        raise CompetitionError(f"{folder}/entry.py defines no load(task, folder, config): a "
                               "carried model would be ignored (the entry would be fitted "
                               "again); define load, or pack without --model")


def _regular_files(root: Path, here: Path, skip: set[Path], *, drop_model: bool
                   ) -> Iterator[tuple[str, Path]]:
    """(name relative to `root` with "/" separators, path) of every file to pack under
    `here`; symlinks and special files are refused."""
    with os.scandir(here) as scan:
        found = sorted(scan, key=lambda e: e.name)
    for item in found:
        path = Path(item.path)
        if item.name.startswith(".") or item.name == "__pycache__" or \
                item.name.endswith(".pyc"):
            continue
        if item.is_symlink():
            raise CompetitionError(f"{path}: a symlink; a code submission holds regular files "
                                   "only (copy the file in instead)")
        if item.is_dir(follow_symlinks=False):
            if not (drop_model and here == root and item.name == MODEL_DIR):
                yield from _regular_files(root, path, skip, drop_model=drop_model)
        elif item.is_file(follow_symlinks=False):
            if path.resolve() not in skip:
                yield path.relative_to(root).as_posix(), path
        else:
            raise CompetitionError(f"{path}: not a regular file; a code submission holds "
                                   "regular files only")


def _write_zip(out: Path, members: list[tuple[str, Path]], limit: int) -> int:
    """Writes the zip beside `out` and moves it there once complete and within `limit`
    bytes (a refused pack leaves no file); its size."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as raw, \
                zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, path in members:
                info = zipfile.ZipInfo(name, _STAMP)
                info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, _MODE
                info.create_system = 3  # Unix, so the mode bits mean what they say
                info.file_size = path.stat().st_size  # zip64 is chosen from it
                with path.open("rb") as src, archive.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                if raw.tell() > limit:  # stop early: the rest would only add to it
                    raise CompetitionError(_too_large(raw.tell(), limit))
        size = os.path.getsize(temp)
        if size > limit:
            raise CompetitionError(_too_large(size, limit))
        os.chmod(temp, 0o644)  # mkstemp's 0600 is for the unfinished file only
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return size


def _too_large(size: int, limit: int) -> str:
    return (f"the zip comes to more than {limit / MIB:g} MB ({size / MIB:.1f} MB at least), "
            "the upload limit (--max-mb): leave out what the entry does not need")
