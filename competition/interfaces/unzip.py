"""A downloaded zip written into a folder without trusting its names (`competition download`):
every name is checked before a byte is written, so a crafted archive cannot write outside
the folder (`../x`, `/etc/x`, `C:x`, `a\\..\\x`, a symlink member, a link already in the folder)
nor replace a file there unless asked to."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from competition.errors import CompetitionError

CHUNK = 1 << 20


def member_path(name: str, what: str = "the download") -> PurePosixPath:
    """A member's path relative to the folder, or a refusal naming it (`what`: the archive,
    as the refusal calls it)."""
    path = PurePosixPath(name)
    parts = name.rstrip("/").split("/")
    if not name or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name) or \
            path.is_absolute() or any(p in ("", ".", "..") for p in parts) or \
            ":" in parts[0]:
        raise CompetitionError(f"{what} holds a file named {name[:200]!r}, which would "
                               "land outside the folder; nothing was written")
    return path


def targets(root: Path, names: list[str], force: bool,
            what: str = "the download") -> list[Path]:
    """Where each name goes under `root`; refused when one leaves it (through a link already
    there too) or, without `force`, when files would be replaced."""
    inside = root.resolve()
    paths = [root / member_path(n, what) for n in names]
    existing = [n for n, p in zip(names, paths, strict=True) if p.exists() or p.is_symlink()]
    for p in paths:
        if not p.parent.resolve().is_relative_to(inside):
            raise CompetitionError(f"{p.parent} leads outside {root} (a link?); nothing was "
                                   "written")
    if existing and not force:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if
                                           len(existing) > 5 else "")
        raise CompetitionError(f"{root} already has {shown}: give --force to replace them, or "
                               "another --out folder")
    return paths


def zip_bytes(total: int, files: int) -> int:
    """The most a stored zip of `files` files of `total` bytes takes: each file's headers,
    data descriptor and directory entry (with Zip64 fields and its name), well rounded up."""
    return total + files * 1024 + (1 << 20)


def extract(archive: Path, root: Path, force: bool = False,
            most_bytes: int | None = None, *, what: str = "the download",
            most_members: int | None = None) -> list[str]:
    """Write the zip's files under `root`; the names written. `most_bytes`: what their
    sizes may add up to at most (a zip's sizes may be anything); `most_members`: how many
    entries (folders too) it may have; `what`: the archive, as refusals call it."""
    try:
        z = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise CompetitionError(f"{what} is not a readable zip ({e})") from None
    with z:
        if most_members is not None and len(z.infolist()) > most_members:
            raise CompetitionError(f"{what} has {len(z.infolist()):,} members; at most "
                                   f"{most_members:,}; nothing was written")
        infos = [i for i in z.infolist() if not i.is_dir()]
        names = [i.filename for i in infos]
        for info in infos:
            if stat.S_ISLNK(info.external_attr >> 16):
                raise CompetitionError(f"{what} holds a link, {info.filename[:200]!r}; "
                                       "nothing was written")
            if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG):
                raise CompetitionError(f"{what} holds {info.filename[:200]!r}, which is not "
                                       "a plain file (a device, a pipe?); nothing was written")
        if len(set(names)) != len(names):
            raise CompetitionError(f"{what} names a file twice; nothing was written")
        for d in (i.filename for i in z.infolist() if i.is_dir()):
            member_path(d, what)
        paths = targets(root, names, force, what)
        if most_bytes is not None and sum(i.file_size for i in infos) > most_bytes:
            limit = f"the {most_bytes:,} bytes announced" if what == "the download" else \
                f"{most_bytes:,} bytes unpacked"
            raise CompetitionError(f"{what}'s files add up to more than {limit}; nothing was "
                                   "written")
        for info, path in zip(infos, paths, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():  # replaced (--force), never followed
                path.unlink()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with z.open(info) as source, os.fdopen(fd, "wb") as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
    return names
