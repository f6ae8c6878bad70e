"""How the portal tells who is asking, and keeps other sites out: the mechanics, with no state
of their own (dependencies.py applies them to each request, with the portal's state).

Who: a team token or the organizer token as `Authorization: Bearer TOKEN` (API, scripts), or
a server-side session whose random id the login form put in an HttpOnly, SameSite=Strict
cookie (pages). The cookie never holds a token. A state-changing request that relies on the
cookie must carry the session's CSRF token (form field `csrf_token` or header
`X-CSRF-Token`); every state-changing request with a foreign `Origin`/`Referer` is refused.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field

SESSION_COOKIE = "competition_session"
CSRF_COOKIE = "competition_csrf"  # the login form's token before there is a session
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# A pre-session token longer than this was not made here (new ones are 43 characters).
MAX_CSRF_CHARS = 100
CSRF_REFUSED = ("the form has expired or did not come from this portal's own page: reload "
                "the page and try again")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Viewer(BaseModel):
    role: str  # "team" or "organizer"
    team: str | None = None
    via: str = "token"  # "token" (Authorization header) or "session" (cookie)
    csrf_token: str | None = None  # the session's, with via="session"
    # The SHA-256 of the token acting (a student's, for team forming); never shown.
    credential: str | None = Field(default=None, exclude=True, repr=False)


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, if the request has one."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, supplied: str | None) -> bool:
    """Both present and equal, compared in constant time."""
    return bool(expected and supplied) and hmac.compare_digest(str(expected).encode(),
                                                               str(supplied).encode())


@dataclass(frozen=True)
class Site:
    """How browsers reach the portal: over HTTP or HTTPS, directly or through a proxy whose
    `X-Forwarded-Proto`/`X-Forwarded-Host` are believed only with `trust_proxy`. It decides
    the portal's own origin and how its cookies are named and flagged."""

    trust_proxy: bool
    # In a course, the competition's slug: its cookies get names of their own, so a session
    # of one competition is never even sent as another's. (Names rather than a cookie
    # `Path`: the `__Host-` prefix below requires path /.)
    scope: str = ""

    def is_https(self, request: Request) -> bool:
        """Served over HTTPS, or behind a trusted proxy that says the browser used HTTPS."""
        if request.url.scheme == "https":
            return True
        forwarded = request.headers.get("x-forwarded-proto", "")
        return self.trust_proxy and forwarded.split(",")[0].strip().lower() == "https"

    def own_origin(self, request: Request) -> str:
        scheme = "https" if self.is_https(request) else "http"
        host = request.headers.get("host", "")
        if self.trust_proxy and request.headers.get("x-forwarded-host"):
            host = request.headers["x-forwarded-host"].split(",")[0].strip()
        return normal_origin(f"{scheme}://{host}")

    def cookie_name(self, request: Request, name: str) -> str:
        # Over HTTPS the `__Host-` prefix makes the browser refuse the cookie unless it is
        # Secure, host-only and for path /: a page on another port or a subdomain cannot
        # plant one.
        scoped = f"{name}-{self.scope}" if self.scope else name
        return f"__Host-{scoped}" if self.is_https(request) else scoped

    def cookie(self, request: Request, name: str) -> str | None:
        return request.cookies.get(self.cookie_name(request, name))

    def set_cookie(self, response: Any, request: Request, name: str, value: str,
                   max_age: int | None = None) -> None:
        response.set_cookie(self.cookie_name(request, name), value, max_age=max_age, path="/",
                            httponly=True, samesite="strict", secure=self.is_https(request))

    def delete_cookie(self, response: Any, request: Request, name: str) -> None:
        response.delete_cookie(self.cookie_name(request, name), path="/", httponly=True,
                               samesite="strict", secure=self.is_https(request))


def request_origin(request: Request) -> str | None:
    """The page a request came from: its `Origin`, or without one its `Referer`'s origin;
    None from outside a browser page (scripts, the CLI)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin
    referer = request.headers.get("referer")
    if not referer:
        return None
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}"


def normal_origin(origin: str) -> str:
    """scheme://host[:port] in lower case, without the scheme's default port."""
    parts = urlsplit(origin.strip().lower())
    try:
        port = parts.port
    except ValueError:
        return "invalid"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def check_same_origin(request: Request, site: Site) -> None:
    """Every state-changing request: an `Origin` (or, without one, a `Referer`) naming
    another origin than `site`'s, the same host on another port included, is refused."""
    if request.method not in UNSAFE_METHODS:
        return
    origin = request_origin(request)
    if origin is None:
        return  # not from a browser page (scripts, the CLI): tokens decide
    own = site.own_origin(request)
    if origin.strip().lower() == "null" or normal_origin(origin) != own:
        raise HTTPException(403, f"a request from another site ({origin[:100]}) may not change "
                                 f"anything here; use this portal's own pages ({own})")
