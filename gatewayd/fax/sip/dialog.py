"""A SIP dialog (RFC 3261 section 12): the state two user agents share for a call.

Made from a 2xx to our INVITE (``as_caller``: the route set is the Record-Route
list reversed, the remote target the answer's Contact) or from an INVITE we answer
(``as_callee``: Record-Route in order, the INVITE's Contact). ``request`` builds
the next request in it (re-INVITE, BYE; ACK keeps the INVITE's CSeq number), with
the route set as Route headers; ``next_hop`` is where it goes: the first route
(loose routing, ``;lr``) or else the remote target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.fax.sip.message import Headers, NameAddr, Request, Response, SipUri


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local: str  # our party (From in requests we send), without tag
    remote: str  # theirs (To in requests we send), without tag
    local_seq: int
    remote_seq: int | None
    remote_target: str
    route_set: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.call_id, self.local_tag

    @classmethod
    def as_caller(cls, invite: Request, response: Response) -> Dialog:
        local = NameAddr.parse(invite.headers.get("From") or "")
        remote = NameAddr.parse(response.headers.get("To") or "")
        contact = response.headers.get("Contact")
        target = NameAddr.parse(contact).uri if contact else invite.uri
        routes = list(reversed(response.headers.get_all("Record-Route")))
        return cls(
            call_id=invite.call_id,
            local_tag=local.tag,
            remote_tag=remote.tag,
            local=_untagged(local),
            remote=_untagged(remote),
            local_seq=invite.cseq[0],
            remote_seq=None,
            remote_target=target,
            route_set=routes,
        )

    @classmethod
    def as_callee(cls, invite: Request, local_tag: str) -> Dialog:
        remote = NameAddr.parse(invite.headers.get("From") or "")
        local = NameAddr.parse(invite.headers.get("To") or "")
        contact = invite.headers.get("Contact")
        target = NameAddr.parse(contact).uri if contact else remote.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=remote.tag,
            local=_untagged(local),
            remote=_untagged(remote),
            local_seq=0,
            remote_seq=invite.cseq[0],
            remote_target=target,
            route_set=invite.headers.get_all("Record-Route"),
        )

    def request(self, method: str, *, contact: str = "", cseq: int | None = None) -> Request:
        """The next request in this dialog (without Via: the user agent adds it)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        headers = Headers()
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{self.local};tag={self.local_tag}")
        headers.add("To", f"{self.remote};tag={self.remote_tag}")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if contact and method not in ("ACK", "BYE", "CANCEL"):
            headers.add("Contact", contact)
        return Request(method, self.remote_target, headers)

    def next_hop(self) -> SipUri:
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).sip_uri
        return SipUri.parse(self.remote_target)

    def accepts(self, request: Request) -> bool:
        """A request in this dialog whose CSeq is not older than the last one (RFC 3261
        12.2.2); ACK and CANCEL carry the INVITE's number."""
        number = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and number < self.remote_seq:
            return False
        self.remote_seq = number
        return True


def _untagged(party: NameAddr) -> str:
    params = {k: v for k, v in party.params.items() if k != "tag"}
    return str(NameAddr(party.uri, party.display, params))
