"""A course: several prepared competitions served (and given a roster) together.

The command line names competitions, or folders holding them: a folder with a
competition.yaml is one competition; a folder without one stands for its subfolders that have
one (a course folder). Each competition is known in the course by its folder's name, its
slug (its pages are at /c/{slug}/), so two with one folder name, or with one competition id,
are refused before anything starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from competition.errors import CompetitionDirError

CONFIG = "competition.yaml"
COURSE_CONFIG = "course.yaml"  # a course folder's own settings (configs.CourseConfig)
# A slug is a path segment and part of cookie names: nothing that needs quoting.
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Member:
    """One competition of a course: its slug and its folder."""

    slug: str
    directory: Path


def course_members(directories: list[Path]) -> list[Member]:
    """The competitions the arguments name, in their order (a course folder's in name order),
    each once; a CompetitionDirError names every problem's folders."""
    members: list[Member] = []
    for given in directories:
        if (given / CONFIG).is_file():
            members.append(_member(given))
            continue
        if not given.is_dir():
            raise CompetitionDirError(f"{given}: no such folder")
        # Hidden folders are work in progress (a competition being created from the portal
        # is staged in one), never a competition.
        found = sorted(p for p in given.iterdir()
                       if not p.name.startswith(".") and (p / CONFIG).is_file())
        if not found and (given / COURSE_CONFIG).is_file():
            continue  # a course with a course.yaml may start empty (competitions are created)
        if not found:
            raise CompetitionDirError(f"{given}: neither a prepared competition (no {CONFIG}) "
                                      f"nor a course folder (no subfolder has one)")
        members.extend(_member(p) for p in found)
    unique: list[Member] = []
    for m in members:
        same = next((u for u in unique if u.directory.resolve() == m.directory.resolve()), None)
        if same is not None:
            continue  # named twice (alone and in its course folder): served once
        clash = next((u for u in unique if u.slug == m.slug), None)
        if clash is not None:
            raise CompetitionDirError(
                f"two competitions have the folder name {m.slug!r} ({clash.directory} and "
                f"{m.directory}): a course serves each at /c/FOLDER-NAME/, so rename one "
                "folder")
        unique.append(m)
    return unique


def course_folder(directories: list[Path]) -> Path | None:
    """The course folder when the command line names exactly one and it has a course.yaml
    (competitions may then be created from the portal, into it); else None."""
    if len(directories) != 1:
        return None
    given = directories[0]
    if (given / CONFIG).is_file() or not (given / COURSE_CONFIG).is_file():
        return None
    return given


def check_ids(members: list[Member], ids: list[str | None]) -> None:
    """Refuse two competitions with one id (competition.yaml's `id`; a copied folder keeps
    its id, and MLflow would mix the two competitions' runs)."""
    seen: dict[str, Member] = {}
    for m, key in zip(members, ids, strict=True):
        if key is None:
            continue
        if key in seen:
            raise CompetitionDirError(
                f"{seen[key].directory} and {m.directory} have the same competition id "
                f"{key!r} (competition.yaml): one is a copy of the other; give the copy a "
                "new id (remove its `id:` line and run `competition migrate` on it)")
        seen[key] = m


def _member(directory: Path) -> Member:
    slug = directory.resolve().name
    if not SLUG.fullmatch(slug):
        raise CompetitionDirError(
            f"{directory}: the folder name {slug!r} cannot be a course path (/c/{slug}/): "
            "use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or "
            "digit)")
    return Member(slug, directory)
