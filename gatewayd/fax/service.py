"""The fax half of the daemon: the carrier named in ``[fax]``, the renderer, the
dispatcher, and the SIP user agent when faxes go or come over SIP."""

from __future__ import annotations

from collections.abc import Callable

from gatewayd.cluster import Cluster
from gatewayd.config.settings import Settings
from gatewayd.fax.carrier import Carrier
from gatewayd.fax.dispatcher import FaxDispatcher
from gatewayd.fax.hylafax import HylafaxCarrier
from gatewayd.fax.sip.carrier import SipCarrier
from gatewayd.fax.sip.service import SipService
from gatewayd.fax.spool import SpoolCarrier
from gatewayd.mailbox import Mailbox
from gatewayd.render.job import Renderer
from gatewayd.render.limits import MemoryLimits

SPOOL_POLL_INTERVAL = 1.0  # reading a directory is cheap
SIP_POLL_INTERVAL = 1.0  # the calls run in this process: asking is free


def make_carrier(settings: Settings, sip: SipService | None = None) -> tuple[Carrier, float]:
    """The configured carrier and how often to ask it about jobs."""
    fax = settings.fax
    if fax.carrier == "hylafax":
        return HylafaxCarrier(fax.hylafax), fax.hylafax.poll_interval
    if fax.carrier == "sip":
        assert sip is not None
        return SipCarrier(sip), SIP_POLL_INTERVAL
    return SpoolCarrier(fax.spool), SPOOL_POLL_INTERVAL


class FaxService:
    def __init__(
        self,
        mailbox: Mailbox,
        settings: Settings,
        *,
        observe_render: Callable[[float], None] | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.sip = SipService(mailbox, settings) if settings.fax.sip_runs else None
        self.carrier, poll_interval = make_carrier(settings, self.sip)
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
            cluster=cluster,
        )

    async def start(self) -> None:
        """Before the dispatcher runs: the SIP user agent, when configured."""
        if self.sip is not None:
            await self.sip.start()

    def reload(self, settings: Settings) -> None:
        """New users and policies (SIGHUP); the carrier keeps its connection."""
        self.dispatcher.reload(settings)
        if self.sip is not None:
            self.sip.reload(settings)

    async def close(self) -> None:
        """After the dispatcher has stopped."""
        self.dispatcher.stop()
        await self.carrier.close()
        if self.sip is not None:
            await self.sip.close()
        await self.renderer.close()
