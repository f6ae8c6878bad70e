"""A participant's entry zip, unpacked without trusting it.

Everything is checked from the central directory before a byte is written (member count,
names, types, duplicates, encryption); the uncompressed size is counted while extracting,
since a header's sizes may lie. Files get mode 0o644 and folders 0o755 whatever the zip says.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from competition.errors import SubmissionError, clipped

ENTRY_FILE = "entry.py"
CHUNK = 1 << 20
IGNORED_TOP = "__MACOSX"  # macOS's resource forks, next to the real content
_DRIVE = re.compile(r"^[A-Za-z]:")
# The central directory of a zip this function reads at all (`is_entry_zip`): beyond it,
# the file is not an entry, whatever it holds.
MAX_DIRECTORY_BYTES = 16 << 20


def _refuse(rule: str, zip_path: Path, member: str | None = None) -> SubmissionError:
    return SubmissionError(rule, file=Path(zip_path).name,
                           where=f"member {clipped(repr(member), 120)}" if member is not None
                           else None)


def _directory_size(fp: BinaryIO) -> tuple[int, int] | None:
    """(members, central directory bytes) from the end record alone, or None if unreadable."""
    end_record = getattr(zipfile, "_EndRecData", None)  # handles zip64; stable since 2.x
    if end_record is None:
        return None
    try:
        rec = end_record(fp)
    except (OSError, ValueError):
        return None
    if not rec:
        return None
    return int(rec[zipfile._ECD_ENTRIES_TOTAL]), int(rec[zipfile._ECD_SIZE])  # type: ignore[attr-defined]


def _open(zip_path: Path, max_members: int) -> zipfile.ZipFile:
    """The zip, its member count checked before zipfile parses the whole directory."""
    try:
        with open(zip_path, "rb") as fp:
            counts = _directory_size(fp)
        if counts is None:
            raise _refuse("not a zip file (or a damaged one)", zip_path)
        members, directory_bytes = counts
        if members > max_members:
            raise _refuse(f"holds {members:,} members; an entry may hold at most "
                          f"{max_members:,}", zip_path)
        if directory_bytes > MAX_DIRECTORY_BYTES:
            raise _refuse("its central directory is too large", zip_path)
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise _refuse(f"not a zip file (or a damaged one): {e}", zip_path) from None
    if len(zf.infolist()) > max_members:  # the end record may understate it
        zf.close()
        raise _refuse(f"holds more than {max_members:,} members", zip_path)
    return zf


def _parts(info: zipfile.ZipInfo, zip_path: Path) -> tuple[str, ...]:
    """The member's path components, refused unless it is a plain relative path."""
    name = info.orig_filename
    if not name or name in ("/", "./"):
        raise _refuse("empty member name", zip_path, name)
    if "\\" in name or "\0" in name:
        raise _refuse("backslashes and NUL characters are not allowed in names", zip_path, name)
    if name.startswith("/") or _DRIVE.match(name):
        raise _refuse("absolute paths are not allowed", zip_path, name)
    parts = tuple(name.rstrip("/").split("/"))
    if any(p in ("", ".", "..") for p in parts):
        raise _refuse("empty, '.' and '..' path components are not allowed", zip_path, name)
    return parts


def _is_dir(info: zipfile.ZipInfo, zip_path: Path) -> bool:
    """Directory or regular file; anything else (symlink, device, FIFO, socket) is refused."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no Unix mode (e.g. made on Windows)
        raise _refuse("only regular files and folders are allowed (no symlinks, devices or "
                      "FIFOs)", zip_path, info.orig_filename)
    if info.flag_bits & 0x1:
        raise _refuse("encrypted members are not allowed", zip_path, info.orig_filename)
    return kind == stat.S_IFDIR or info.orig_filename.endswith("/")


Parts = tuple[str, ...]


def _plan(zf: zipfile.ZipFile,
          zip_path: Path) -> tuple[list[tuple[zipfile.ZipInfo, Parts]], set[Parts]]:
    """The files to write (member, path parts) and the folders to make, all checked."""
    files: list[tuple[zipfile.ZipInfo, Parts]] = []
    dirs: set[tuple[str, ...]] = set()
    seen: set[tuple[str, ...]] = set()
    for info in zf.infolist():
        parts = _parts(info, zip_path)
        is_dir = _is_dir(info, zip_path)
        if parts in seen:
            raise _refuse("duplicate name", zip_path, info.orig_filename)
        seen.add(parts)
        if parts[0] == IGNORED_TOP:
            continue
        dirs.update(parts[:k] for k in range(1, len(parts)))
        if is_dir:
            dirs.add(parts)
        else:
            files.append((info, parts))
    for _, parts in files:
        if parts in dirs:
            raise _refuse("names both a file and a folder", zip_path, "/".join(parts))
    return files, dirs


def _entry_folder(names: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """() when entry.py is at the top, (top,) when everything sits in one top folder holding
    it, None otherwise."""
    if (ENTRY_FILE,) in names:
        return ()
    tops = {p[0] for p in names if p[0] != IGNORED_TOP}
    if len(tops) == 1:
        top = next(iter(tops))
        if (top, ENTRY_FILE) in names:
            return (top,)
    return None


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: list[int],
             zip_path: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        os.fchmod(out.fileno(), 0o644)  # whatever the umask
        while chunk := src.read(CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise _refuse("the entry is larger than allowed when unpacked", zip_path,
                              info.orig_filename)
            out.write(chunk)


def unpack_entry(zip_path: Path, dest: Path, *, max_bytes: int, max_members: int = 2000) -> Path:
    """Unpack `zip_path` into the empty folder `dest`; the entry folder (dest, or dest/<top>
    when everything sits in one top folder), which holds entry.py. SubmissionError names the
    member and the rule it breaks."""
    zip_path, dest = Path(zip_path), Path(dest)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} must be empty")
    with _open(zip_path, max_members) as zf:
        files, dirs = _plan(zf, zip_path)
        entry = _entry_folder({p for _, p in files} | dirs)
        if entry is None:
            raise _refuse(f"no {ENTRY_FILE} at the top of the zip or of its one top folder "
                          "(an entry defines fit and predict in entry.py)", zip_path)
        budget = [max_bytes]
        try:  # folders too: a name too long for this file system is refused, not an OSError
            for parts in sorted(dirs, key=len):
                folder = dest.joinpath(*parts)
                folder.mkdir(mode=0o755)
                folder.chmod(0o755)
            for info, parts in files:
                _extract(zf, info, dest.joinpath(*parts), budget, zip_path)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError,
                RuntimeError) as e:  # damaged data, an unsupported compression
            raise _refuse(f"cannot be unpacked: {e}", zip_path) from None
    return dest.joinpath(*entry)


def is_entry_zip(path: Path, max_members: int = 2000) -> bool:
    """Whether the zip holds entry.py at its top or in its one top folder (a code submission,
    not e.g. an MRI submission's .nii.gz files). Reads only the central directory, bounded."""
    with contextlib.suppress(SubmissionError, OSError), _open(Path(path), max_members) as zf:
        names = set()
        for info in zf.infolist():
            name = info.orig_filename
            if name and "\\" not in name and not name.startswith("/"):
                names.add(tuple(PurePosixPath(name).parts))
        return _entry_folder(names) is not None
    return False
