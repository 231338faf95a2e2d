"""The exceptions gatewayd raises across domain boundaries.

The whole tree::

    GatewayError
    ├── ConfigError              the config file is missing, unreadable or invalid;
    │                            carries every problem found, each naming its key
    ├── StoreError               the mailbox could not do what was asked
    │   ├── MessageNotFound      no message (or attachment, or API token) with that id
    │   ├── InvalidTransition    a status, availability or part change the machine refuses
    │   ├── LeaseLost            a worker acted on a message whose lease it no longer holds
    │   ├── BlobError            attachment bytes missing or unreadable
    │   ├── StoreUnavailable     the database cannot be reached or is out of room now;
    │   │                        the same call may succeed later
    │   └── StoreConflict        a write collided with a row already there (a unique key)
    ├── StartupError             the daemon could not start (port in use, database unreachable)
    │   └── NodeNameInUse        another live node of the cluster has this node's name
    │   └── AlreadyRunning       another daemon holds the data directory's lock file
    ├── RejectedMessage          ingress refuses a mail; carries the SMTP reply to send
    ├── Refusal                  (gatewayd.admission) a fax or SMS is not admitted; carries a
    │                            code and the values each door words its own reply from
    ├── RenderError              a document cannot become fax pages; the message says why,
    │                            ``fax_error_code`` says how the mailbox records it
    ├── CarrierError             a fax carrier failed us; ``reason`` says how
    │   ├── CarrierUnavailable   it cannot be reached or failed for now: try again later
    │   └── CarrierRefused       it refuses us (login, permissions): an operator must act
    └── LinkError                an SMPP link failed us
        ├── LinkDown             not bound, or went down while a request waited
        │   └── ResponseTimeout  no answer within response_timeout
        └── BindRefused          the SMSC refused the bind; ``status`` is its command_status

The database's own exceptions (SQLAlchemy's, the drivers') are translated into
StoreError where the mailbox touches the database (mailbox/_database.py), and never
leave the mailbox. Other third-party exceptions are translated where they are caught
(``raise X(...) from exc``) and never cross a domain boundary untranslated. Pure
helpers raise ValueError subclasses of their own (a bad number, an undecodable PDU),
which their callers turn into a refusal or one of the above.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gatewayd.model import FaxErrorCode


class GatewayError(Exception):
    """Base of every error gatewayd raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` lists every problem, one line each."""

    def __init__(self, problems: Sequence[str], *, source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            summary = f"{where}{self.problems[0]}"
        else:
            summary = f"{where}{len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(summary)


class StoreError(GatewayError):
    """The mailbox could not carry out an operation."""


class MessageNotFound(StoreError):
    def __init__(self, message_id: int, *, what: str = "message") -> None:
        self.message_id = message_id
        self.what = what
        super().__init__(f"{what} {message_id} not found")


class InvalidTransition(StoreError):
    """A change the status machine (or the availability life cycle) does not allow."""

    def __init__(self, message_id: int, field: str, current: str, wanted: str, why: str) -> None:
        self.message_id = message_id
        self.field = field
        self.current = current
        self.wanted = wanted
        super().__init__(f"message {message_id}: {field} {current} -> {wanted} refused: {why}")


class LeaseLost(StoreError):
    def __init__(self, message_id: int, owner: str) -> None:
        self.message_id = message_id
        self.owner = owner
        super().__init__(f"message {message_id} is no longer leased by {owner}")


class BlobError(StoreError):
    """Attachment bytes could not be written or read."""


class StoreUnavailable(StoreError):
    """The database could not be reached, or could not take the write now (a lost
    connection, a locked or full database); the same call may succeed later."""


class StoreConflict(StoreError):
    """A write collided with a row already there (a unique key)."""


class StartupError(GatewayError):
    """The daemon could not start; the message says which part failed."""


class AlreadyRunning(StartupError):
    """Another daemon holds the lock file of the data directory (gatewayd/lockfile.py)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"another gatewayd ({holder}) is running on this data directory: it holds {path}"
        )


class RejectedMessage(GatewayError):
    """A mail (or one of its recipients) is refused; ``reply`` is the full SMTP reply,
    code, enhanced status code and reason, e.g. ``550 5.7.1 relaying denied``."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__(reply)


class RenderError(GatewayError):
    """A document cannot be turned into fax pages."""

    def __init__(
        self, reason: str, *, fax_error_code: FaxErrorCode = FaxErrorCode.RENDERING_FAILED
    ) -> None:
        self.reason = reason
        self.fax_error_code = fax_error_code
        super().__init__(reason)


class CarrierError(GatewayError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = message


class CarrierUnavailable(CarrierError):
    """The carrier cannot be reached or failed for now; try again later."""


class CarrierRefused(CarrierError):
    """The carrier refuses us (login, permissions): an operator must act."""


class LinkError(GatewayError):
    """An SMPP link failed us."""


class LinkDown(LinkError):
    """The link is not bound, or went down while a request waited for its answer."""


class ResponseTimeout(LinkDown):
    """No response within response_timeout."""


class BindRefused(LinkError):
    def __init__(self, status: int, status_name: str) -> None:
        super().__init__(f"the SMSC refused the bind: {status_name}")
        self.status = status


class NodeNameInUse(StartupError):
    """Another live node of the cluster has this node's name."""
