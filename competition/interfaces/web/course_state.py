"""A course's state (course.py builds it): its competitions' portals, and what the course's
own pages need of them."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request

from competition.configs import PortalConfig
from competition.interfaces.web.security import (
    UNSAFE_METHODS,
    Site,
    normal_origin,
    request_origin,
)
from competition.interfaces.web.sign_in_limits import SignInLimits
from competition.interfaces.web.state import Portal
from competition.jobs.runners import SharedRunner

COURSE_PREFIX = "/c/"


@dataclass
class Course:
    """The course's state: its competitions' portals by slug, in the order given."""

    portals: dict[str, Portal]
    site: Site
    sign_ins: SignInLimits
    runner: SharedRunner

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
        configs = [p.comp.config.portal for p in self.portals.values()]
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
    if request.method not in UNSAFE_METHODS:
        return
    origin = request_origin(request)
    if origin is None:
        return
    own = course_of(request).site.own_origin(request)
    if origin.strip().lower() == "null" or normal_origin(origin) != own:
        raise HTTPException(403, f"a request from another site ({origin[:100]}) may not change "
                                 f"anything here; use this portal's own pages ({own})")
