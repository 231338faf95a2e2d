"""The fax half of the daemon: the carrier named in ``[fax]``, the renderer, the
dispatcher."""

from __future__ import annotations

from collections.abc import Callable

from gatewayd.config.settings import Settings
from gatewayd.fax.carrier import Carrier
from gatewayd.fax.dispatcher import FaxDispatcher
from gatewayd.fax.hylafax import HylafaxCarrier
from gatewayd.fax.spool import SpoolCarrier
from gatewayd.mailbox import Mailbox
from gatewayd.render.job import Renderer
from gatewayd.render.limits import MemoryLimits

SPOOL_POLL_INTERVAL = 1.0  # reading a directory is cheap


def make_carrier(settings: Settings) -> tuple[Carrier, float]:
    """The configured carrier and how often to ask it about jobs."""
    fax = settings.fax
    if fax.carrier == "hylafax":
        return HylafaxCarrier(fax.hylafax), fax.hylafax.poll_interval
    return SpoolCarrier(fax.spool), SPOOL_POLL_INTERVAL


class FaxService:
    def __init__(
        self,
        mailbox: Mailbox,
        settings: Settings,
        *,
        observe_render: Callable[[float], None] | None = None,
    ) -> None:
        self.carrier, poll_interval = make_carrier(settings)
        self.renderer = Renderer(
            settings.fax.render_workers, memory=MemoryLimits.from_settings(settings.fax)
        )
        self.dispatcher = FaxDispatcher(
            mailbox,
            settings,
            self.carrier,
            self.renderer,
            poll_interval=poll_interval,
            observe_render=observe_render,
        )

    def reload(self, settings: Settings) -> None:
        """New users and policies (SIGHUP); the carrier keeps its connection."""
        self.dispatcher.reload(settings)

    async def close(self) -> None:
        """After the dispatcher has stopped."""
        self.dispatcher.stop()
        await self.carrier.close()
        await self.renderer.close()
