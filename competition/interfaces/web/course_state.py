"""A course's state (course.py builds it): its competitions' portals, and what the course's
own pages need of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from competition.configs import PortalConfig
from competition.interfaces.web.security import Site, check_same_origin
from competition.interfaces.web.sign_in_limits import SignInLimits
from competition.interfaces.web.state import Portal
from competition.jobs.runners import SharedRunner

if TYPE_CHECKING:
    from competition.interfaces.web.course_create import Creator
    from competition.interfaces.web.course_organizer import CourseOrganizer

COURSE_PREFIX = "/c/"


@dataclass
class Course:
    """The course's state: its competitions' portals by slug, in the order given.

    `portals` is replaced, never changed in place, when a competition is added (`mount`):
    requests iterating the old mapping meanwhile are not disturbed."""

    portals: dict[str, Portal]
    site: Site
    sign_ins: SignInLimits
    runner: SharedRunner
    # Served as a course folder with a course.yaml (`competition serve COURSE_DIR`): its
    # organizer, who may create competitions (course_create.py), else None.
    organizer: CourseOrganizer | None = None
    creator: Creator | None = None
    # Mounts a prepared competition (folder, slug) live; set by course.py.
    mount: Callable[[Path, str], Portal] | None = field(default=None, repr=False)

    def fresh(self) -> dict[str, Portal]:
        """The portals, each with its competition.yaml read again if it changed (a
        competition's own requests do this in its guard; the course's pages read dates and
        sign in to every competition, and must see the rules in force too)."""
        for p in self.portals.values():
            if p.stale():
                p.reload()
        return self.portals

    def sign_in_rules(self) -> PortalConfig:
        """The strictest of the competitions' sign-in limits (a token tried at the course's
        sign-in is tried at every competition)."""
        configs = [p.comp.config.portal for p in self.portals.values()] or [PortalConfig()]
        return configs[0].model_copy(update={
            "sign_in_window_seconds": max(c.sign_in_window_seconds for c in configs),
            "sign_in_failures_per_address": min(c.sign_in_failures_per_address
                                                for c in configs),
            "sign_in_attempts_per_token_prefix": min(c.sign_in_attempts_per_token_prefix
                                                     for c in configs)})


def course_of(request: Request) -> Course:
    found: Course = request.app.state.course
    return found


def same_origin(request: Request) -> None:
    """As a competition's (dependencies.same_origin): a state-changing request from a page
    of another origin is refused."""
    check_same_origin(request, course_of(request).site)
