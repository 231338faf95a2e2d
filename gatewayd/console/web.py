"""What every console page shares: the ``Console`` (the daemon's parts as the API's
``Context`` has them, the templates, the sessions), the signed-in ``Viewer`` and what
they may see, and the answers (a page, a fragment, a redirect, an error page).

Who sees what: a user sees their own extension's messages; a user with ``api_admin``
sees every extension of their account and the operator pages (the dashboard), and may
act on those messages (read state, delete, restore, cancel, retry). Anything else is
"not found", never "forbidden": a page does not tell that another mailbox's message
exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gatewayd import __version__
from gatewayd.api.deps import Context
from gatewayd.config.settings import Settings, User
from gatewayd.console.sessions import CSRF_FIELD, CSRF_HEADER, Sessions, Viewer, same
from gatewayd.errors import MessageNotFound
from gatewayd.mailbox import Mailbox, Message, iso
from gatewayd.model import MessageStatus

BASE = "/console"
FINAL = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERY_FAILED,
        MessageStatus.SENDING_FAILED,
        MessageStatus.RECEIVED,
    }
)


class NotSignedIn(Exception):
    """The request needs a session it does not have."""


class Refused(Exception):
    """A request the console will not carry out; ``status`` and words for the page."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.detail = detail


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def _size(count: int | None) -> str:
    if count is None:
        return ""
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return str(count)


def _party(message: Message, to: bool = False) -> str:
    parties = message.to if to else (message.from_,)
    return ", ".join(p.phone_number or p.extension_number or p.name or "?" for p in parties)


class Console:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.sessions = Sessions(context.mailbox)
        self.templates = Environment(
            loader=PackageLoader("gatewayd.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(when=_when, size=_size, iso=iso, party=_party)
        self.templates.globals.update(version=__version__, base=BASE, final=FINAL)

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def mailbox(self) -> Mailbox:
        return self.context.mailbox

    # -- who is asking ------------------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer:
        """The signed-in viewer, or NotSignedIn."""
        found: Viewer | None = getattr(request.state, "viewer", None)
        if found is None:
            found = await self.sessions.viewer(request, self.settings)
            if found is None:
                raise NotSignedIn
            request.state.viewer = found
        return found

    async def admin(self, request: Request) -> Viewer:
        viewer = await self.viewer(request)
        if not viewer.admin:
            raise Refused(404, "Not found")
        return viewer

    async def posted(self, request: Request) -> tuple[Viewer, Mapping[str, Any]]:
        """A POST from a signed-in viewer with the right CSRF token: the viewer and the
        form."""
        viewer = await self.viewer(request)
        form = await request.form(max_files=0, max_fields=100)
        check_csrf(request, form, viewer.csrf)
        return viewer, form

    async def message(self, viewer: Viewer, message_id: int) -> Message:
        """The message if the viewer may see it, else MessageNotFound."""
        user = viewer.user
        message = await self.mailbox.get(
            message_id, extension_id=None if viewer.admin else user.extension_id
        )
        if message.account_id != user.account_id:
            raise MessageNotFound(message_id)
        return message

    def scope(self, viewer: Viewer) -> tuple[int | None, int]:
        """The extension (None: every one) and the account a viewer may see."""
        user = viewer.user
        return (None if viewer.admin else user.extension_id), user.account_id

    def users_of(self, viewer: Viewer) -> list[User]:
        """The extensions a viewer may look at."""
        me = viewer.user
        if not viewer.admin:
            return [me]
        return [u for u in self.settings.users if u.account_id == me.account_id]

    # -- answers --------------------------------------------------------------------------

    def render(self, template: str, request: Request, **values: Any) -> str:
        viewer: Viewer | None = getattr(request.state, "viewer", None)
        return self.templates.get_template(template).render(
            request=request,
            viewer=viewer,
            refresh=f"every {self.settings.console.refresh_interval:g}s",
            refresh_ms=int(self.settings.console.refresh_interval * 1000),
            **values,
        )

    def page(
        self, template: str, request: Request, *, status: int = 200, **values: Any
    ) -> Response:
        return HTMLResponse(self.render(template, request, **values), status_code=status)


def check_csrf(request: Request, form: Mapping[str, Any], expected: str) -> None:
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not same(given if isinstance(given, str) else None, expected):
        raise Refused(
            403,
            "This form has expired",
            "Go back, reload the page and try again (the form's security token did not match).",
        )


def redirect(path: str, **query: Any) -> RedirectResponse:
    shown = {k: v for k, v in query.items() if v not in (None, "")}
    return RedirectResponse(f"{path}?{urlencode(shown)}" if shown else path, status_code=303)


def back_to(form: Mapping[str, Any], fallback: str) -> str:
    """Where a form says to go back to: a console path, else ``fallback``."""
    target = form.get("next")
    if isinstance(target, str) and target.startswith(BASE + "/") and "//" not in target:
        return target
    return fallback


def current(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


Handler = Callable[[Request], Awaitable[Response]]
