"""Rendering attacked: a small PDF that inflates to gigabytes of path objects, a text of
200,000 form feeds, HTML of 200,000 paragraphs; with the render workers' memory
sampled from /proc while they work, and workers replaced after their calls or a job
that left them large."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gatewayd.config.settings import FaxSettings
from gatewayd.errors import RenderError
from gatewayd.model import FaxErrorCode
from gatewayd.render.job import Renderer, RenderOptions, Source
from gatewayd.render.kinds import Kind
from gatewayd.render.limits import TOO_LARGE, MemoryLimits
from tests import documents
from tests.conftest import gatewayd
from tests.hostile.conftest import own_rss_mb, rss_mb, tree_of

MB = 1024 * 1024
DOCS = Path(__file__).resolve().parents[1] / "data" / "docs"


class Peak:
    """The largest resident memory of this process's children (the render workers and
    their forkserver), sampled every 20 ms."""

    def __init__(self) -> None:
        self.mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.02):
            children = [pid for pid in tree_of(me) if pid != me]
            self.mb = max(self.mb, sum(own_rss_mb(pid) for pid in children))


@contextmanager
def peak() -> Iterator[Peak]:
    sampler = Peak()
    thread = threading.Thread(target=sampler._sample, daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        sampler._stop.set()
        thread.join()


def _workers(renderer: Renderer) -> set[int]:
    pool = renderer._pool
    return {p.pid for p in getattr(pool, "_processes", {}).values()} if pool else set()


def _source(tmp_path: Path, name: str, kind: Kind, data: bytes) -> Source:
    path = tmp_path / name
    path.write_bytes(data)
    return Source(name, kind, path)


OPTIONS = RenderOptions.from_settings(FaxSettings())


async def test_a_pdf_that_inflates_to_gigabytes_fails_as_too_large(tmp_path: Path) -> None:
    bomb = _source(tmp_path, "bomb.pdf", Kind.PDF, documents.path_bomb_pdf(30))
    assert bomb.path.stat().st_size < 100_000
    renderer = Renderer(1, memory=MemoryLimits(400 * MB, 0, 256 * MB))
    try:
        with peak() as sampled, pytest.raises(RenderError) as caught:
            await renderer.render([bomb], None, OPTIONS, tmp_path / "out.tif")
        assert caught.value.reason == f"bomb.pdf: {TOO_LARGE}"
        assert sampled.mb < 600  # the report saw 2 GB in `gatewayd render`, 8.6 GB by mail
        # The next job renders, in a worker that is not the bloated one.
        page = _source(tmp_path, "one.pdf", Kind.PDF, (DOCS / "one-page.pdf").read_bytes())
        done = await renderer.render([page], None, OPTIONS, tmp_path / "ok.tif")
        assert done.pages == 1
        assert sum(rss_mb(pid) for pid in _workers(renderer)) < 256
    finally:
        await renderer.close()


@pytest.mark.parametrize(
    ("kind", "text"),
    [(Kind.TEXT, "page\f" * 200_000), (Kind.HTML, "<p>line</p>" * 200_000)],
    ids=["form feeds", "paragraphs"],
)
async def test_text_and_html_stop_at_max_pages_while_being_built(
    tmp_path: Path, kind: Kind, text: str
) -> None:
    source = _source(tmp_path, "long", kind, text.encode())
    renderer = Renderer(1)
    try:
        with peak() as sampled, pytest.raises(RenderError) as caught:
            await renderer.render([source], None, OPTIONS, tmp_path / "out.tif")
    finally:
        await renderer.close()
    assert caught.value.fax_error_code is FaxErrorCode.TOO_MANY_PAGES
    assert caught.value.reason == "long: too many pages: more than 200"
    assert sampled.mb < 400  # 1.2 GB before


async def test_workers_are_replaced_after_their_calls_and_after_a_large_job(
    tmp_path: Path,
) -> None:
    three = _source(tmp_path, "three.pdf", Kind.PDF, (DOCS / "three-pages.pdf").read_bytes())
    renderer = Renderer(1, memory=MemoryLimits(None, calls_per_worker=2))
    try:
        await renderer.render([three], None, OPTIONS, tmp_path / "a.tif")  # prepare + pages
        first = _workers(renderer)
        assert first == set()  # two calls: the pool was replaced after the job
        second = await renderer.render([three], None, OPTIONS, tmp_path / "b.tif")
        assert second.pages == 3
    finally:
        await renderer.close()
    fat = Renderer(1, memory=MemoryLimits(None, 0, max_rss=1))  # every worker is too large
    try:
        await fat.render([three], None, OPTIONS, tmp_path / "c.tif")
        assert _workers(fat) == set()
        again = await fat.render([three], None, OPTIONS, tmp_path / "d.tif")
        assert again.pages == 3
    finally:
        await fat.close()


def test_the_render_command_is_bounded_too(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(documents.path_bomb_pdf(30))
    config = tmp_path / "gatewayd.toml"
    config.write_text('[fax]\nrender_memory = "400MiB"\n')
    result = gatewayd("render", str(bomb), "-o", str(tmp_path / "out.tif"), "--config", str(config))
    assert result.returncode == 1
    assert TOO_LARGE in result.stderr
    assert "Traceback" not in result.stderr
