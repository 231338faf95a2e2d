"""Admission: whether an outbound fax or SMS may be queued, the same for every door.

A door (SMTP in gatewayd/ingress, the HTTP API in gatewayd/api) reads its own format
into plain values: the user, the destinations (texts, or numbers already parsed), the
text, the documents as (file name, declared type, bytes), the options. ``sms.messages``
and ``fax.messages`` turn those into the ``NewMessage``s to store, one per destination,
or raise one ``Refusal`` whose ``Code`` the door maps to its own reply (an SMTP reply
code, an API error). Number parsing and policy rules are gatewayd/destinations.py;
document kinds gatewayd/render/kinds.py; SMS parts gatewayd/gsm.py.

Nothing here touches the mailbox, a socket or a door's format: only counting a fax's
pages opens the documents, in a thread.
"""

from gatewayd.admission.numbers import Channel, Number, destination, destinations
from gatewayd.admission.refusals import Code, DocumentRef, Refusal

__all__ = ["Channel", "Code", "DocumentRef", "Number", "Refusal", "destination", "destinations"]
