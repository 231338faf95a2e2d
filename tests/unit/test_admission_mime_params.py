"""The parser's parts read a header's parameters once (admission.mime._Part): every
question asked of a part answers as the stdlib's own Message answers it."""

from __future__ import annotations

import email
import email.message
import email.policy
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.admission import mime
from gatewayd.admission.mime import parse

MAIL = Path(__file__).resolve().parents[1] / "data" / "mail"
PARAMS = ("charset", "format", "delsp", "name", "boundary", "filename", "x-unknown")


def _answers(part: Message) -> list[object]:
    out: list[object] = [
        part.get_content_type(),
        part.get_params(),
        part.get_params(header="content-disposition"),
        part.get_params(unquote=False),
        part.get_filename(),
        part.get_content_charset(),
        part.get_boundary(),
    ]
    for name in PARAMS:
        out.append(part.get_param(name))
        out.append(part.get_param(name, header="content-disposition"))
        out.append(part.get_param(name, unquote=False))
    return out


def _both(raw: bytes) -> tuple[list[list[object]], list[list[object]]]:
    ours = parse(raw)
    theirs = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert type(ours) is not Message  # the parts are ours
    asked_twice = [_answers(p) + _answers(p) for p in ours.walk()]
    return asked_twice, [_answers(p) + _answers(p) for p in theirs.walk()]


@pytest.mark.parametrize("name", sorted(p.name for p in MAIL.glob("*.eml")))
def test_the_corpus_parts_answer_as_the_stdlibs(name: str) -> None:
    ours, theirs = _both((MAIL / name).read_bytes())
    assert ours == theirs


_VALUES = st.sampled_from(
    ['"utf-8"', "UTF-8", "us-ascii", '"a;b"', "flowed", "yes", '"scan (1).pdf"',
     "utf-8''%E2%82%ACuro.pdf", "iso-8859-1'en'%A3", '""', "x", '"q\\"uote"']
)  # fmt: skip
_NAMES = st.sampled_from(["charset", "format", "delsp", "name", "name*", "filename*0",
                          "filename*1", "boundary", "Charset", "x-unknown"])  # fmt: skip


@settings(max_examples=200)
@given(
    kind=st.sampled_from(["text/plain", "application/pdf", "multipart/mixed", "text/html"]),
    params=st.lists(st.tuples(_NAMES, _VALUES), max_size=5),
    disposition=st.lists(st.tuples(_NAMES, _VALUES), max_size=3),
)
def test_any_parameters_answer_as_the_stdlibs(
    kind: str, params: list[tuple[str, str]], disposition: list[tuple[str, str]]
) -> None:
    content_type = "; ".join([kind, *(f"{k}={v}" for k, v in params)])
    header = "; ".join(["attachment", *(f"{k}={v}" for k, v in disposition)])
    raw = (
        f"Content-Type: {content_type}\r\nContent-Disposition: {header}\r\n\r\nbody\r\n"
    ).encode()
    ours, theirs = _both(raw)
    assert ours == theirs


def test_a_header_set_after_parsing_is_read_anew() -> None:
    part = parse(b'Content-Type: text/plain; charset="utf-8"\r\n\r\nx\r\n')
    assert part.get_content_charset() == "utf-8"
    part.set_param("charset", "iso-8859-1")
    assert part.get_content_charset() == "iso-8859-1"
    del part["Content-Type"]
    part["Content-Type"] = "text/plain; charset=us-ascii"
    assert part.get_content_charset() == "us-ascii"


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The header texts the stdlib parses from now on, none kept from before."""
    monkeypatch.setattr(mime, "_params_of", {})
    found: list[str] = []
    split = email.message._parseparam  # type: ignore[attr-defined]

    def counted(value: str) -> object:
        found.append(value)
        return split(value)

    monkeypatch.setattr(email.message, "_parseparam", counted)
    return found


def test_a_header_is_parsed_once_however_many_parameters_are_asked(parsed: list[str]) -> None:
    """Equal answers hold without the cache too; this is what the cache is for."""
    raw = b'Content-Type: text/plain; charset="utf-8"; format=flowed\r\n\r\nx\r\n'
    part = parse(raw)
    answers = [part.get_content_charset(), part.get_param("format"), part.get_param("delsp")]
    assert answers == ["utf-8", "flowed", None]
    assert len(parsed) == 1
    again = parse(raw)  # the next mail with the same header: not parsed again
    assert again.get_content_charset() == "utf-8"
    assert len(parsed) == 1


def test_what_is_kept_is_bounded(parsed: list[str]) -> None:
    for n in range(mime.PARAMS_KEPT + 10):
        part = parse(f"Content-Type: text/plain; charset=x-{n}\r\n\r\nx\r\n".encode())
        assert part.get_content_charset() == f"x-{n}"
    assert 0 < len(mime._params_of) <= mime.PARAMS_KEPT
    long = "text/plain; charset=utf-8; x-pad=" + "a" * mime.PARAMS_KEPT_CHARS
    part = parse(f"Content-Type: {long}\r\n\r\nx\r\n".encode())
    assert part.get_content_charset() == part.get_content_charset() == "utf-8"
    assert long not in mime._params_of
    assert parsed.count(long) == 2  # a long header is parsed each time it is asked
