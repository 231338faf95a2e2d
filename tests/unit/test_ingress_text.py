"""Email bodies into SMS text and readable text: signatures, quotes, footers, HTML."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.ingress import text as text_module
from gatewayd.ingress.text import clean_sms_text
from gatewayd.render.html import html_to_text


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("Hello Bob", "Hello Bob"),
        ("  Hello Bob  \n\n\n", "Hello Bob"),
        ("See you at 8\n\n-- \nAlice\nACME Corp", "See you at 8"),
        ("See you at 8\n--\nAlice", "See you at 8"),
        ("Yes!\n\nOn Tue, 24 Nov 2026 at 10:00, Bob <bob@x.example> wrote:\n> Lunch?", "Yes!"),
        ("Ja!\n\nAm 24.11.2026 um 10:00 schrieb Bob <bob@x.example>:\n> Mittag?", "Ja!"),
        ("OK\n\n-----Original Message-----\nFrom: Bob\nSent: Tuesday\nSubject: x", "OK"),
        ("OK\n\nFrom: Bob <bob@x.example>\nSent: Tuesday, 24 November 2026 10:00\nTo: me", "OK"),
        ("OK\n________________________________\nVon: Bob\nGesendet: Dienstag", "OK"),
        ("Top reply\n> quoted line\n>> older\nmore text", "Top reply\nmore text"),
        ("On my way\n\nSent from my iPhone", "On my way"),
        ("On my way\n\nGet Outlook for Android", "On my way"),
        ("Unterwegs\n\nVon meinem iPhone gesendet", "Unterwegs"),
        ("Bin gleich da\n\nGesendet von meinem Samsung Galaxy", "Bin gleich da"),
        ("Ok\r\n\r\nSent from Mail for Windows\r\n", "Ok"),
        ("Line one\n\n\n\n\nLine two", "Line one\n\nLine two"),
        ("-- \nonly a signature", ""),
        ("\n \n\t\n", ""),
        (
            "Sent from my iPhone is my favourite phrase",
            "Sent from my iPhone is my favourite phrase",
        ),
    ],
)
def test_clean_sms_text(body: str, text: str) -> None:
    assert clean_sms_text(body) == text


_LINES = st.sampled_from(
    ["Hello", "  spaced  ", "", " ", "> quoted", "Sent from my iPhone", "-- ", "x" * 30,
     "On Tue, Bob wrote:", "From: Bob", "Sent: Tuesday", "Get Outlook for iOS", "\t"]
) | st.text(max_size=20)  # fmt: skip


@settings(max_examples=300)
@given(lines=st.lists(_LINES, max_size=30), newline=st.sampled_from(["\n", "\r\n", "\r"]),
       enough=st.integers(0, 80))  # fmt: skip
def test_a_cut_text_is_longer_than_enough_and_so_is_the_whole(
    lines: list[str], newline: str, enough: int
) -> None:
    """Cut or not, the verdict "longer than enough" is the whole text's."""
    body = newline.join(lines)
    whole, cut = clean_sms_text(body), clean_sms_text(body, enough)
    if len(whole) <= enough:
        assert cut == whole
    else:
        assert len(cut) > enough
        assert len(cut) <= enough + 1 or cut == whole


def test_a_huge_body_is_cut_after_its_first_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut, and read no further than the cut: the lines looked at are counted."""
    body = "Call me back about the contract please.\n" * 260_000
    looked_at: list[str] = []

    class Counting:
        def match(self, line: str) -> None:
            looked_at.append(line)

    monkeypatch.setattr(text_module, "_REPLY_HEADER", Counting())
    assert clean_sms_text(body, 1530) == body[:1531]
    lines_to_the_cut = body[:1531].count("\n") + 1
    assert len(looked_at) <= 2 * (lines_to_the_cut + 1)  # the line, and it with the next


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Hello&nbsp;<b>Bob</b></p><p>Bye</p>", "Hello Bob\n\nBye"),
        ("<html><head><style>p{color:red}</style><title>T</title></head><body>Hi</body></html>",
         "Hi"),
        ("<script>alert(1)</script>Safe", "Safe"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<ul><li>one</li><li>two</li></ul>", "- one\n- two"),
        ("<div>x   y\n z</div>", "x y z"),
        ("<pre>keep\nlines</pre>", "keep\nlines"),
        ("Fish &amp; chips &lt;3 &#8364;5", "Fish & chips <3 €5"),
        ("<table><tr><td>a</td><td>b</td></tr></table>", "a\tb"),
    ],
)  # fmt: skip
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    "line",
    [
        "On Mon, 1 Dec 2026 at 10:00, Bob <bob@example.com> wrote:",
        "Am 01.12.2026 um 10:00 schrieb Bob:",
        "Le lun. 1 déc. 2026 à 10:00, Bob a écrit :",
        "-----Original Message-----",
        "-- Ursprüngliche Nachricht --",
        "_" * 32,
        "From: Bob\nSent: Monday",
        "Von: Bob\nGesendet: Montag",
        "Sent from my iPhone",
        "Sent from my Galaxy S23 Ultra",
        "Sent from Outlook for iOS",
        "Get Outlook for Android",
        "Sent with Proton Mail",
        "Von meinem Smartphone gesendet",
        "Envoyé de mon iPhone",
        "See you on Monday, Bob wrote",
        "Sent from the office",
        "From: the desk of Bob",
        "",
    ],
)
def test_the_patterns_at_once_match_as_each_of_them(line: str) -> None:
    """A line is matched against each list as one pattern: what any of them matches."""
    assert bool(text_module._REPLY_HEADER.match(line)) == any(
        p.match(line) for p in text_module._REPLY_HEADERS
    )
    assert bool(text_module._FOOTER.match(line)) == any(p.match(line) for p in text_module._FOOTERS)
