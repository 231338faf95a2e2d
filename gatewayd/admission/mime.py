"""MIME taken apart within limits, the same for both doors: a mail (SMTP) and a
multipart/mixed fax request (the API).

The stdlib parser nests one generator per level, so a deep enough nesting ends in a
RecursionError after work quadratic in the depth, and every part is an object in
memory. ``parse`` counts as it goes and stops at once with a Refusal:
NESTED_TOO_DEEPLY past ``smtp.max_mime_depth`` levels (a multipart in a multipart,
a forwarded mail in a forwarded mail: each container counts one), TOO_MANY_PARTS past
``smtp.max_mime_parts`` parts. Blocking for a large input: a door runs it in a thread.
"""

from __future__ import annotations

import email.feedparser
import email.policy
from dataclasses import dataclass
from email.message import Message
from email.policy import Policy
from typing import Any

from gatewayd.admission.refusals import Code, Refusal
from gatewayd.config.settings import SmtpSettings


@dataclass(frozen=True, slots=True)
class MimeLimits:
    depth: int
    parts: int

    @classmethod
    def from_settings(cls, smtp: SmtpSettings) -> MimeLimits:
        return cls(smtp.max_mime_depth, smtp.max_mime_parts)


DEFAULT_LIMITS = MimeLimits.from_settings(SmtpSettings())
FEED_BYTES = 64 * 1024


# Parameters parsed, by the header's text (see _Part): the same few Content-Types come
# in mail after mail. Texts up to PARAMS_KEPT_CHARS are kept, PARAMS_KEPT of them at
# most, then forgotten at once.
PARAMS_KEPT = 1024
PARAMS_KEPT_CHARS = 256
_params_of: dict[str, tuple[Any, ...]] = {}


class _Part(Message):
    """A compat32 part that parses a header's parameters once for every part and mail
    with the same header. ``get_param`` (and so ``get_content_charset``,
    ``get_filename``, ...) parses the whole header again for every parameter asked: a
    text part's Content-Type three times or more, and each parse is ~4 µs on the SMTP
    door's event loop. The parse is a function of the header's text alone (the stdlib's
    ``_get_params_preserve``, unchanged since Python 3.0, reads nothing else), so it is
    kept by that text, for every mail: ``text/plain; charset=utf-8`` is parsed once."""

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        value = self.get(header)
        if not isinstance(value, str) or len(value) > PARAMS_KEPT_CHARS:
            # Missing, a Header object, or long: the stdlib's way, every time.
            return super()._get_params_preserve(failobj, header)  # type: ignore[misc]
        params = _params_of.get(value)
        if params is None:
            if len(_params_of) >= PARAMS_KEPT:
                _params_of.clear()
            found = super()._get_params_preserve(failobj, header)  # type: ignore[misc]
            params = _params_of[value] = tuple(found)
        return list(params)


class _BoundedParser(email.feedparser.BytesFeedParser):
    """The stdlib's feed parser, counting each part as it begins. (``_new_message`` and
    ``_msgstack`` are the parser's own, unchanged since Python 3.2: every part, the
    root included, is made there, and the stack holds the parts open around it.)"""

    def __init__(self, limits: MimeLimits, policy: Policy) -> None:
        # Our part class where the policy leaves the class to the parser (compat32).
        factory = _Part if policy.message_factory is None else None
        super().__init__(factory, policy=policy)
        self._limits = limits
        self._parts = 0

    def _new_message(self) -> None:
        open_parts: list[Message] = self._msgstack  # type: ignore[attr-defined]
        if len(open_parts) >= self._limits.depth:
            raise Refusal(Code.NESTED_TOO_DEEPLY, limit=self._limits.depth)
        self._parts += 1
        if self._parts > self._limits.parts:
            raise Refusal(Code.TOO_MANY_PARTS, limit=self._limits.parts)
        super()._new_message()  # type: ignore[misc]


def parse(
    raw: bytes, limits: MimeLimits = DEFAULT_LIMITS, policy: Policy = email.policy.compat32
) -> Message:
    """``raw`` as a Message, or Refusal NESTED_TOO_DEEPLY / TOO_MANY_PARTS."""
    parser = _BoundedParser(limits, policy)
    # In pieces, as the parser is made to be fed: each of its steps over a piece (the
    # decoding, the splitting into lines) then holds the GIL for a piece's worth, not a
    # whole 25 MB mail's, against the event loop's thread.
    for start in range(0, len(raw), FEED_BYTES):
        parser.feed(raw[start : start + FEED_BYTES])
    message: Message = parser.close()
    return message
