"""The SMS half of the daemon: the links, what they deliver, and the dispatcher."""

from __future__ import annotations

import asyncio

from gatewayd.cluster import Cluster
from gatewayd.config.settings import Settings
from gatewayd.mailbox import Mailbox
from gatewayd.sms.dispatcher import Links, SmsDispatcher
from gatewayd.sms.inbound import Inbound
from gatewayd.sms.link import SmppLink
from gatewayd.sms.rendezvous import Rendezvous


class SmsService:
    def __init__(
        self, mailbox: Mailbox, settings: Settings, *, cluster: Cluster | None = None
    ) -> None:
        rendezvous = Rendezvous(mailbox)
        self.inbound = Inbound(mailbox, settings, rendezvous)
        self.links = Links([SmppLink(link, self.inbound) for link in settings.sms.links])
        self.dispatcher = SmsDispatcher(mailbox, settings, self.links, rendezvous, cluster=cluster)

    def start(self) -> None:
        """Bind the links (in the background: a link that is down is retried) and start
        the reassembly sweep; the caller runs ``dispatcher.run``."""
        self.inbound.start()
        for link in self.links.links:
            link.start()

    def reload(self, settings: Settings) -> None:
        """New users, numbers and policies (SIGHUP); links keep their binds."""
        self.inbound.reload(settings)
        self.dispatcher.reload(settings)

    async def close(self) -> None:
        """After the dispatcher has stopped: unbind, stop taking deliveries."""
        self.dispatcher.stop()
        await asyncio.gather(*(link.close() for link in self.links.links))
        await self.inbound.close()
