"""Creating a competition from a course's portal (issue 28, item 4): the form's checks, and
preparing as a background job.

The course organizer (course_organizer.py) names a kind (`competition tasks`), a slug (the
new folder COURSE_DIR/SLUG and its address /c/SLUG/), a title, options (`--option` lines),
rules, and a source: a folder under one of course.yaml's `sources` roots, or an uploaded zip.
Everything the request can check is checked before a job starts (each refusal a 4xx naming
the field). The job then prepares the competition as `competition prepare` does, in a hidden
work folder inside COURSE_DIR (hidden folders are never competitions: board.course), makes
its store, gives it the course organizer's token, renames it into place in one step and
mounts it live. One preparation runs at a time (it is CPU and disk heavy; scoring jobs keep
their own runner); others wait in line. A failed job names the source's problem; paths of
the server other than the source folder the organizer named are replaced in its message.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from competition.board.course import SLUG
from competition.configs import CompetitionConfig, CourseConfig, RulesConfig, load
from competition.errors import CompetitionError
from competition.interfaces.web.course_organizer import CourseOrganizer

log = logging.getLogger(__name__)
WORK = ".creating"  # COURSE_DIR/.creating/JOB: each job's source and staged competition
MAX_JOBS = 200  # jobs remembered (the oldest finished ones are forgotten first)
MAX_TITLE_CHARS = 200
# A string option is a word (e.g. holdout=mirrored): a preparer may read a path from an
# option (dsb2018's mirror=DIR), and nothing outside the allowed roots may be read.
OPTION_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# What the form may send besides the zip, with each field's cap in bytes.
FIELDS = {"kind": 100, "slug": 100, "title": 4 * MAX_TITLE_CHARS, "source": 4096,
          "options": 8192, "start": 100, "deadline": 100, "rules": 8192}
ZIP_FIELD = "source_zip"


def refuse(status: int, field_name: str, message: str) -> HTTPException:
    return HTTPException(status, f"{field_name}: {message}")


@dataclass
class Plan:
    """A checked request: what the job prepares."""

    kind: str
    slug: str
    title: str
    synthetic: bool
    source: Path | None  # a folder under an allowed root (resolved)
    source_shown: str  # how the organizer named it (errors show this, not the server's path)
    options: dict[str, Any]
    rules: dict[str, Any]


@dataclass
class Job:
    id: str
    slug: str
    kind: str
    status: str = "queued"  # queued, running, done, failed
    stage: str = "waiting for its turn"
    fraction: float = 0.0
    error: str | None = None
    url: str | None = None
    created: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "slug": self.slug, "kind": self.kind, "status": self.status,
                "stage": self.stage, "fraction": round(self.fraction, 3), "error": self.error,
                "url": self.url}


def kinds() -> dict[str, str]:
    """The kinds `competition tasks` lists, with their descriptions."""
    from competition.tasks import all_sources

    return {kind: source.description for kind, (_task, source) in sorted(all_sources().items())}


def _lines(text: str, field_name: str) -> list[str]:
    found = [line.strip() for line in text.splitlines() if line.strip()]
    if any(len(line) > 1000 for line in found):
        raise refuse(422, field_name, "a line is over 1000 characters")
    return found


def check_options(kind: str, text: str) -> dict[str, Any]:
    from competition.tasks import find_source
    from competition.tasks.preparing import check_options as known_options
    from competition.tasks.preparing import parse_options

    try:
        options = parse_options(_lines(text, "options"))
        known_options(kind, find_source(kind)[1].prepare, options)
    except CompetitionError as e:
        raise refuse(422, "options", str(e).removeprefix("--option ")) from None
    for key, value in options.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and (not OPTION_WORD.fullmatch(v) or os.path.lexists(v)):
                raise refuse(422, "options", f"{key}: {str(v)[:100]!r} is not allowed from "
                             "the portal (a number, or a word of letters, digits, '.', '_' and "
                             "'-' that names no file; options naming folders are the "
                             "command line's)")
            if not isinstance(v, str | int | float | bool) and v is not None:
                raise refuse(422, "options", f"{key}: expected a number, a word or a list "
                             "of them")
    return options


def check_rules(start: str, deadline: str, text: str) -> dict[str, Any]:
    """The rules the form sets (start, deadline and `key=value` lines of competition.yaml's
    rules), validated as competition.yaml's."""
    from competition.tasks.preparing import parse_options

    rules: dict[str, Any] = {}
    for line in _lines(text, "rules"):
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise refuse(422, "rules", f"{line[:100]!r}: expected key=value (e.g. "
                         "daily_limit=3)")
        rules.update(parse_options([line]))
    for key, value in (("start", start), ("deadline", deadline)):
        if value.strip():
            rules[key] = value.strip()
    unknown = sorted(set(rules) - set(RulesConfig.model_fields))
    if unknown:
        raise refuse(422, "rules", f"unknown rule {unknown[0]!r} (rules: "
                     f"{', '.join(RulesConfig.model_fields)})")
    try:
        RulesConfig.model_validate(rules)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "rules"
        raise refuse(422, where if where in ("start", "deadline") else f"rules.{where}",
                     str(first["msg"]).removeprefix("Value error, ")) from None
    return rules


def check_source_path(text: str, roots: list[Path]) -> tuple[Path, str]:
    """The folder `text` names, resolved (symlinks followed), if it lies under one of `roots`
    (a relative name is taken under each root in turn); else a 4xx naming the roots."""
    given = text.strip()
    named = ", ".join(str(r) for r in roots) or "none (course.yaml's `sources` is empty)"
    if not roots:
        raise refuse(403, "source", f"no source folder may be named here: allowed roots: "
                     f"{named}; upload a zip instead")
    if "\x00" in given or ".." in PurePath(given).parts:
        raise refuse(400, "source", "a path with '..' is not accepted; name the folder "
                     f"under one of the allowed roots: {named}")
    candidates = [Path(given)] if Path(given).is_absolute() else [r / given for r in roots]
    for candidate in candidates:
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if any(resolved.is_relative_to(r.resolve()) for r in roots):
            if not resolved.is_dir():
                raise refuse(422, "source", f"{given!r} is not a folder")
            return resolved, given
        raise refuse(403, "source", f"{given!r} lies outside the allowed roots (links "
                     f"followed): {named}")
    raise refuse(404, "source", f"no folder {given!r} under the allowed roots: {named}")


def check_zip(path: Path, limits: CourseConfig) -> None:
    """The uploaded zip's directory, read before a job starts (a 422 naming the problem; the
    job checks again as it writes): its members' count, names (nothing absolute, no `..`),
    kinds (plain files and folders: no links, no devices) and unpacked total."""
    import stat
    import zipfile

    from competition.interfaces.unzip import member_path

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise refuse(422, ZIP_FIELD, f"not a readable zip ({e})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_source_members:
            raise refuse(422, ZIP_FIELD, f"{len(infos):,} members; at most "
                         f"{limits.max_source_members:,} (course.yaml's max_source_members)")
        for info in infos:
            try:
                member_path(info.filename, "the zip")
            except CompetitionError as e:
                raise refuse(422, ZIP_FIELD, str(e).replace("; nothing was written", ""))\
                    from None
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise refuse(422, ZIP_FIELD, f"{info.filename[:200]!r} is a link or another "
                             "special file; only files and folders are accepted")
        total = sum(i.file_size for i in infos)
        if total > limits.max_source_unpacked_mb * 1e6:
            raise refuse(422, ZIP_FIELD, f"its files add up to {total / 1e6:,.1f} MB unpacked; "
                         f"at most {limits.max_source_unpacked_mb:g} MB (course.yaml's "
                         "max_source_unpacked_mb)")


class Creator:
    """The course's creation jobs, and the one thread at a time that prepares."""

    def __init__(self, folder: Path, organizer: CourseOrganizer, taken: Any,
                 mount: Any) -> None:
        """`taken()`: the slugs served now; `mount(folder, slug)`: serve a new one."""
        self.folder, self.organizer = folder, organizer
        self.taken, self.mount = taken, mount
        self.jobs: dict[str, Job] = {}
        self.reserved: set[str] = set()
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()
        # Work a stopped server left behind (a killed job) is no competition: removed.
        shutil.rmtree(self.work_root, ignore_errors=True)

    @property
    def work_root(self) -> Path:
        return self.folder / WORK

    # --- checks before a job --------------------------------------------------------------

    def plan(self, fields: dict[str, str], has_zip: bool) -> Plan:
        from competition.tasks import find_source

        kind = fields.get("kind", "").strip()
        known = kinds()
        if kind not in known:
            raise refuse(422, "kind", f"unknown kind {kind[:100]!r}; choose one of "
                         f"{', '.join(known)}")
        slug = self.check_slug(fields.get("slug", ""))
        title = fields.get("title", "").strip()
        if len(title) > MAX_TITLE_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in title):
            raise refuse(422, "title", f"at most {MAX_TITLE_CHARS} characters, on one line")
        synthetic = find_source(kind)[1].synthetic is not None
        source_text = fields.get("source", "").strip()
        if synthetic and (source_text or has_zip):
            raise refuse(422, "source", f"{kind} makes its own synthetic data: leave the "
                         "source folder and zip empty")
        if not synthetic and bool(source_text) == has_zip:
            raise refuse(422, "source", f"{kind} is prepared from its data set: name a "
                         "folder under the allowed roots or upload a zip (one of them)")
        source, shown = (None, "")
        if source_text:
            source, shown = check_source_path(source_text, self.organizer.config().sources)
        options = check_options(kind, fields.get("options", ""))
        rules = check_rules(fields.get("start", ""), fields.get("deadline", ""),
                            fields.get("rules", ""))
        return Plan(kind, slug, title, synthetic, source, shown, options, rules)

    def check_slug(self, text: str) -> str:
        slug = text.strip()
        if not SLUG.fullmatch(slug):
            raise refuse(422, "slug", f"{slug[:100]!r} cannot be an address (/c/SLUG/): use "
                         "letters, digits, '.', '_' and '-' (at most 64, starting with a "
                         "letter or digit)")
        with self._lock:
            if slug in self.taken() or slug in self.reserved or \
                    os.path.lexists(self.folder / slug):
                raise refuse(409, "slug", f"{slug!r} is taken (a competition, a job under "
                             "way or a folder of the course has that name)")
        return slug

    def zip_folder(self) -> Path:
        """Where an upload is received: inside COURSE_DIR, so it is renamed, not copied."""
        self.work_root.mkdir(exist_ok=True)
        return self.work_root

    # --- jobs ------------------------------------------------------------------------------

    def start(self, plan: Plan, zip_path: Path | None) -> Job:
        job = Job(secrets.token_urlsafe(12), plan.slug, plan.kind)
        work = self.work_root / job.id
        with self._lock:
            if plan.slug in self.reserved or plan.slug in self.taken():
                raise refuse(409, "slug", f"{plan.slug!r} is taken (a job under way)")
            self.reserved.add(plan.slug)
            self._forget_old()
            self.jobs[job.id] = job
        work.mkdir(parents=True)
        if zip_path is not None:
            zip_path.rename(work / "source.zip")
        threading.Thread(target=self._run, args=(job, plan, work), daemon=True,
                         name=f"create-{plan.slug}").start()
        return job

    def job(self, job_id: str) -> Job:
        found = self.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, "no such job (jobs are kept while the server runs)")
        return found

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.status in ("done", "failed")]
        while len(self.jobs) >= MAX_JOBS and finished:
            self.jobs.pop(finished.pop(0).id, None)

    def _run(self, job: Job, plan: Plan, work: Path) -> None:
        error = None
        try:
            with self._one_at_a_time:
                job.status, job.stage = "running", "starting"
                self._prepare(job, plan, work)
        except Exception as e:  # whatever went wrong, the job says so; nothing half-made
            if isinstance(e, CompetitionError):
                error = self._shown(str(e), plan, work)
            else:
                log.exception("creating %s failed", plan.slug)
                error = (f"preparing failed ({type(e).__name__}: "
                         f"{self._shown(str(e), plan, work)[:500]})")
        finally:
            # Cleaned up before the job is seen to end: its work folder, then its slug.
            shutil.rmtree(work, ignore_errors=True)
            with self._lock:
                self.reserved.discard(plan.slug)
        if error is None:
            job.url, job.stage, job.fraction = f"/c/{plan.slug}/", "done", 1.0
            job.status = "done"
        else:
            job.error, job.status = error, "failed"

    def _prepare(self, job: Job, plan: Plan, work: Path) -> None:
        from competition.board.board import Board, migrate
        from competition.board.prepared import PreparedCompetition
        from competition.interfaces.unzip import extract
        from competition.tasks.preparing import prepare

        source = plan.source
        archive = work / "source.zip"
        if archive.exists():
            job.stage, job.fraction = "unpacking the source zip", 0.05
            limits = self.organizer.config()
            source = work / "source"
            source.mkdir()
            extract(archive, source, what="the source zip",
                    most_bytes=int(limits.max_source_unpacked_mb * 1e6),
                    most_members=limits.max_source_members)
            archive.unlink()
            inside = list(source.iterdir())
            if len(inside) == 1 and inside[0].is_dir():
                source = inside[0]  # a zipped folder: its content is the source
        elif source is not None:
            job.stage, job.fraction = "checking the source folder's links", 0.05
            self._links_stay_inside(source, plan.source_shown)
        job.stage, job.fraction = f"preparing ({plan.kind})", 0.2
        staged = prepare(plan.kind, work / "competition", source=source, options=plan.options,
                         name=plan.slug)
        job.stage, job.fraction = "writing the title and rules", 0.8
        path = staged / "competition.yaml"
        config = load(CompetitionConfig, path)
        rules = RulesConfig.model_validate({**config.rules.model_dump(), **plan.rules})
        config = config.model_copy(update={"title": plan.title or config.title,
                                           "rules": rules})
        path.write_bytes(config.to_yaml())
        job.stage, job.fraction = "making the store", 0.85
        comp = PreparedCompetition.open(staged)
        migrate(comp)
        digest = self.organizer.config().organizer_token_sha256
        if digest:  # the course organizer is this competition's organizer too
            board = Board(comp)
            board.teams.set_organizer_hash(digest)
            board.engine.dispose()
        job.stage, job.fraction = "opening it on the portal", 0.95
        target = self.folder / plan.slug
        with self._lock:
            if os.path.lexists(target):
                raise CompetitionError(f"slug: {plan.slug!r} was taken meanwhile (a folder "
                                       "of that name appeared)")
            staged.rename(target)  # one step: the folder is whole or absent
        self.mount(target, plan.slug)

    def _links_stay_inside(self, source: Path, shown: str) -> None:
        """Refuse a source folder holding a link to anything outside the allowed roots (the
        preparer would follow it)."""
        roots = [r.resolve() for r in self.organizer.config().sources]
        for folder, dirs, files in os.walk(source):
            for name in dirs + files:
                path = Path(folder) / name
                if path.is_symlink() and not any(
                        path.resolve().is_relative_to(r) for r in roots):
                    inside = path.relative_to(source).as_posix()
                    raise CompetitionError(f"source: {shown}/{inside} is a link to outside "
                                           "the allowed roots; it is not read")

    def _shown(self, message: str, plan: Plan, work: Path) -> str:
        """The message without the server's paths (the organizer's source name aside)."""
        replacements = [(work / "source", "the source zip"), (work, "the new competition"),
                        (self.folder, "the course folder")]
        if plan.source is not None:
            replacements.insert(0, (plan.source, plan.source_shown))
        for path, shown in replacements:
            for form in {str(path), str(path.resolve())}:
                message = message.replace(form, shown)
        tmp = re.escape(tempfile.gettempdir())
        return re.sub(tmp + r"/[^\s'\":,;)]*", "(a temporary folder)", message)
