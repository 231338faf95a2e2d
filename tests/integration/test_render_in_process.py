"""A Renderer with an in-process budget (``gatewayd render``): a short job is drawn in
the calling process without a pool; a long one starts the pool once the budget is
spent and hands it the rest; every way gives the same TIFF, checked by tiffcheck."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatewayd.config.settings import FaxSettings
from gatewayd.render.job import CoverSheet, Renderer, RenderOptions, Source
from gatewayd.render.kinds import Kind
from tests import documents
from tests.faxcheck import assert_fax

COVER = CoverSheet("+4940123456", subject="Manual", sent_at=datetime(2026, 1, 2, tzinfo=UTC))


async def render(tmp_path: Path, name: str, renderer: Renderer) -> tuple[bytes, bool]:
    """The TIFF, and whether a pool was started for it."""
    pdf = documents.write(tmp_path, "manual.pdf", lambda: documents.dense_text_pdf(30))
    out = tmp_path / f"{name}.tif"
    try:
        done = await renderer.render(
            [Source("manual.pdf", Kind.PDF, pdf)],
            COVER,
            RenderOptions.from_settings(FaxSettings()),
            out,
        )
        pooled = renderer._pool is not None  # what the budget decided
    finally:
        await renderer.close()
    assert done.pages == 31
    assert_fax(out, count=31)
    return out.read_bytes(), pooled


@pytest.mark.parametrize("workers", [1, 2])
async def test_in_process_then_the_pool_gives_the_same_fax(tmp_path: Path, workers: int) -> None:
    pooled_only, pooled = await render(tmp_path, "pool", Renderer(workers))
    assert pooled
    here, pooled = await render(tmp_path, "here", Renderer(workers, in_process=3600))
    assert not pooled
    # A budget of a moment: the first call here, the rest in the pool.
    both, pooled = await render(tmp_path, "both", Renderer(workers, in_process=1e-9))
    assert pooled
    assert here == pooled_only == both
