"""The console's pure parts: the SMS counter's words, refusals in words, the submit
rate, a message's log lines, fax pages as pictures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from gatewayd.admission import Channel, Code, DocumentRef, Refusal
from gatewayd.console import logs
from gatewayd.console.live import RateMeter
from gatewayd.console.send import part_count, refusal_text
from gatewayd.errors import RenderError
from gatewayd.render import preview


@pytest.mark.parametrize(
    ("text", "parts", "alphabet", "units"),
    [
        ("", 0, "GSM-7", 0),
        ("Hello", 1, "GSM-7", 5),
        ("€" * 80, 1, "GSM-7", 160),  # two septets each: exactly one part
        ("€" * 81, 2, "GSM-7", 162),
        ("x" * 160, 1, "GSM-7", 160),
        ("x" * 161, 2, "GSM-7", 161),
        ("Ж" * 70, 1, "UCS-2", 70),
        ("Ж" * 71, 2, "UCS-2", 71),
        ("😀" * 35, 1, "UCS-2", 70),  # surrogate pairs: two units each
    ],
)
def test_the_counter_says_what_the_gateway_will_send(
    text: str, parts: int, alphabet: str, units: int
) -> None:
    count = part_count(text, max_parts=10)
    assert (count["parts"], count["alphabet"], count["units"]) == (parts, alphabet, units)
    assert count["too_long"] is False


def test_the_counter_says_when_a_text_is_too_long() -> None:
    assert part_count("x" * 306, max_parts=2)["too_long"] is False  # 153 + 153
    assert part_count("x" * 307, max_parts=2)["too_long"] is True


def test_every_refusal_has_words_for_a_person() -> None:
    document = DocumentRef(0, "scan.bmp", "image/bmp")
    for code in Code:
        words = refusal_text(
            Refusal(code, document=document, count=3, limit=2, value="+4930", reason="why"),
            Channel.FAX,
        )
        assert words
        assert words[0].isupper() or words[0] in "+s", words
    refused = Refusal(Code.UNSUPPORTED_DOCUMENT, document=document, reason="PDF, TIFF")
    assert refusal_text(refused, Channel.FAX) == "scan.bmp cannot be faxed; faxable are PDF, TIFF."


def test_submits_a_second_come_from_samples_of_the_count() -> None:
    meter = RateMeter(window=10)
    assert meter.rate("smsc", 0, now=100.0) is None
    assert meter.rate("smsc", 50, now=102.0) == 25.0
    assert meter.rate("smsc", 50, now=104.0) == 12.5
    rate = None
    for moment in range(105, 130):
        rate = meter.rate("smsc", 50, now=float(moment))
    assert rate == 0.0  # the burst is out of the window


def test_log_lines_are_those_of_the_message(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.log"
    lines = [
        {
            "timestamp": "t1",
            "level": "info",
            "event": "fax.submitted",
            "message_id": 42,
            "carrier": "spool",
        },
        {"timestamp": "t2", "level": "info", "event": "other", "message_id": 420},
        {"timestamp": "t3", "level": "warning", "event": "note", "detail": "42"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json 42\n")
    [found] = logs.lines_for(path, 42)
    assert (found.timestamp, found.level, found.event, found.rest) == (
        "t1",
        "info",
        "fax.submitted",
        "carrier=spool",
    )
    assert logs.lines_for(tmp_path / "missing.log", 42) == []


def test_only_the_end_of_a_large_log_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gatewayd.log"
    old = json.dumps({"event": "old", "message_id": 7})
    new = json.dumps({"event": "new", "message_id": 7})
    path.write_text(old + "\n" + "x" * 1000 + "\n" + new + "\n")
    monkeypatch.setattr(logs, "TAIL_BYTES", len(new) + 10)
    assert [line.event for line in logs.lines_for(path, 7)] == ["new"]


def _fax(tmp_path: Path, dpi: tuple[int, int], pages: int = 2) -> Path:
    path = tmp_path / "fax.tif"
    images = [Image.new("1", (1728, 1146), 1) for _ in range(pages)]
    images[0].save(
        path, format="TIFF", compression="group4", dpi=dpi, save_all=True, append_images=images[1:]
    )
    return path


def test_a_fax_page_is_drawn_at_its_true_proportions(tmp_path: Path) -> None:
    normal = _fax(tmp_path, (204, 98))
    assert preview.page_count(normal) == 2
    full = Image.open(io.BytesIO(preview.page_png(normal, 1)))
    assert (full.size, full.mode) == ((1728, round(1146 * 204 / 98)), "1")
    thumb = Image.open(io.BytesIO(preview.page_png(normal, 0, 200)))
    assert (thumb.width, thumb.mode) == (200, "L")
    with pytest.raises(RenderError, match="there is no page 3"):
        preview.page_png(normal, 2)
    (tmp_path / "not.tif").write_bytes(b"not a tiff")
    with pytest.raises(RenderError, match="cannot read the fax pages"):
        preview.page_png(tmp_path / "not.tif", 0)
