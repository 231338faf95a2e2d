"""Typed, frozen settings: the one place where every default lives.

``config/gatewayd.toml`` documents these defaults key by key (a test checks that the
file and this module agree). Durations are seconds, sizes are bytes. Relative paths
are relative to the directory gatewayd is started from.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SQLITE_FILE_NAME = "mailbox.sqlite3"
# Sized for a 200-page job with a cover page (docs/render.md, "Limits and failures").
RENDER_MEMORY = 1024 * 1024 * 1024

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
Synchronous = Literal["full", "normal"]
Resolution = Literal["fine", "normal"]
Paper = Literal["a4", "letter"]
Compression = Literal["g4", "g3"]
FaxCarrierName = Literal["spool", "hylafax", "sip"]
SipTransport = Literal["udp", "tcp", "tls"]
BindMode = Literal["transceiver", "transmitter_receiver"]
Concatenation = Literal["udh8", "udh16", "sar", "payload"]
SmscIdFormat = Literal["auto", "hex", "decimal", "text"]
UnknownDestination = Literal["ack", "refuse"]
NotifySecurity = Literal["none", "starttls", "tls"]


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class NodeSettings:
    # This node's name in a cluster (several daemons on one PostgreSQL mailbox): unique,
    # the same across restarts. Leases, carrier job tags and log lines carry it.
    # Empty: the host name (up to its first dot).
    name: str = ""
    heartbeat_interval: float = 5.0
    # A node whose heartbeat is older than this is gone: its name may be taken and
    # the messages it held are adopted by the others.
    stale_after: float = 30.0

    @property
    def resolved_name(self) -> str:
        return self.name or socket.gethostname().split(".")[0] or "gatewayd"


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    data_dir: Path = Path("var")
    # Empty: SQLite in data_dir. Otherwise a SQLAlchemy URL, e.g.
    # postgresql+asyncpg://gatewayd@db/gatewayd (password from PGPASSWORD or ~/.pgpass).
    database_url: str = ""
    sqlite_synchronous: Synchronous = "full"
    retention_deleted_days: int = 5
    retention_purged_days: int = 5
    max_messages: int = 10_000  # per extension; 0 means no limit
    sweep_interval: float = 600.0
    lease_timeout: float = 300.0

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / SQLITE_FILE_NAME}"

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


@dataclass(frozen=True, slots=True)
class SmtpListener:
    address: HostPort
    require_auth: bool = False
    auth_without_tls: bool = False


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    listen: tuple[SmtpListener, ...] = (SmtpListener(HostPort("127.0.0.1", 2525)),)
    hostname: str = "localhost"
    require_auth: bool = False
    auth_without_tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    fax_domain: str = "fax.example.com"
    sms_domain: str = "sms.example.com"
    domains: tuple[str, ...] = ("example.com",)
    default_region: str = "DE"
    allow_from_mismatch: bool = False
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 50
    rate_per_minute: int = 60
    # Connections open at once, per listener and per client address (IPv6: per /64).
    max_connections: int = 4000
    max_connections_per_address: int = 50
    # No command (NOOP, RSET, HELP, VRFY, EXPN do not count) or DATA bytes for this
    # long: 421 and goodbye. A session lasts at most session_timeout, whatever it does.
    idle_timeout: float = 300.0
    session_timeout: float = 1800.0
    # Failed logins: a growing delay, then 421 after this many on one connection, or
    # this many from one address within 15 minutes.
    auth_failures_per_connection: int = 3
    auth_failures_per_address: int = 10
    # MIME structure of a mail (and of the API's multipart/mixed fax requests).
    max_mime_depth: int = 30
    max_mime_parts: int = 1000


# +870 Inmarsat, +881 global mobile satellite systems, +882 and +883 international
# networks, +1 NXX 976 XXXX (US pay-per-call exchanges).
REFUSED_RANGES = ("+870*", "+881*", "+882*", "+883*", "+1???976*")


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    # E.164 country calling codes allowed as destinations; empty means all.
    allowed_countries: tuple[int, ...] = ()
    # phonenumbers PhoneNumberType names refused as destinations.
    refused_number_types: tuple[str, ...] = ("PREMIUM_RATE", "SHARED_COST")
    # E.164 numbers or prefixes ending in "*" refused as destinations ("?" stands for
    # any one digit).
    deny: tuple[str, ...] = ()
    # Ranges refused on top of deny, by default the costly ones libphonenumber does not
    # type as premium: Inmarsat, the international networks, and US 976 numbers.
    refused_ranges: tuple[str, ...] = REFUSED_RANGES


@dataclass(frozen=True, slots=True)
class SmppLinkSettings:
    name: str = "simulator"
    address: HostPort = HostPort("127.0.0.1", 2775)
    system_id: str = "gatewayd"
    password: str = field(default="gatewayd", repr=False)
    system_type: str = ""
    addr_range: str = ""
    bind: BindMode = "transceiver"
    tls: bool = False
    window: int = 10
    tps: float = 100.0  # submit_sm per second; 0 means no cap
    prefixes: tuple[str, ...] = ()  # destination prefixes routed here ("+49", "+4930")
    default: bool = True  # takes destinations no link's prefixes match
    concatenation: Concatenation = "udh8"
    data_coding: int = 0  # data_coding for GSM-7 text; UCS-2 always uses 8
    registered_delivery: bool = True
    smsc_id_format: SmscIdFormat = "auto"
    bind_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    inactivity_timeout: float = 120.0
    reconnect_delay: float = 2.0
    reconnect_delay_max: float = 60.0


@dataclass(frozen=True, slots=True)
class SmsSettings:
    max_parts: int = 10
    max_attempts: int = 5
    max_age: float = 86_400.0
    retry_delay: float = 30.0
    accepted_is_delivered: bool = False  # treat receipt stat ACCEPTD as Delivered
    unknown_destination: UnknownDestination = "ack"
    reassembly_timeout: float = 60.0
    policy: DestinationPolicy = DestinationPolicy()
    links: tuple[SmppLinkSettings, ...] = (SmppLinkSettings(),)


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    outbox: Path = Path("var/fax/outbox")
    results: Path = Path("var/fax/results")
    # The fax system that reads the outbox and writes results shares this group with
    # gatewayd ("": the daemon's own group); files and directories are made with these
    # modes (never readable by others).
    group: str = ""
    file_mode: int = 0o640
    dir_mode: int = 0o2770


@dataclass(frozen=True, slots=True)
class HylafaxSettings:
    address: HostPort = HostPort("127.0.0.1", 4559)
    username: str = "gatewayd"
    password: str = field(default="", repr=False)
    poll_interval: float = 15.0
    max_dials: int = 12
    max_tries: int = 3
    kill_time: float = 3 * 3600.0
    modem: str = "any"


@dataclass(frozen=True, slots=True)
class SipSettings:
    """A SIP trunk (``[fax.sip]``): faxes out as calls, faxes in from calls."""

    proxy: HostPort = HostPort("127.0.0.1", 5060)  # every request goes here
    registrar: HostPort | None = None  # None: the proxy
    transport: SipTransport = "udp"
    username: str = ""  # empty: no REGISTER, no digest login (a trunk that trusts our IP)
    password: str = field(default="", repr=False)
    from_user: str = ""  # empty: username (or "gatewayd")
    from_domain: str = ""  # empty: the proxy's host
    caller_id: str = ""  # empty: the sending user's fax number
    local_address: HostPort = HostPort("0.0.0.0", 5060)  # noqa: S104 - calls come in here
    media_ports: tuple[int, int] = (10000, 10999)  # RTP and UDPTL, both ends included
    t38: bool = True
    ecm: bool = True
    register_interval: float = 600.0  # 0: do not register
    max_calls: int = 4
    receive: bool = False  # run the user agent for inbound faxes under another carrier

    @property
    def domain(self) -> str:
        return self.from_domain or self.proxy.host

    @property
    def registers(self) -> bool:
        return bool(self.username) and self.register_interval > 0


@dataclass(frozen=True, slots=True)
class FaxSettings:
    carrier: FaxCarrierName = "spool"
    resolution: Resolution = "fine"
    paper: Paper = "a4"
    compression: Compression = "g4"
    cover: bool = True
    max_attachments: int = 10
    max_pages: int = 200
    max_input_bytes: int = 50 * 1000 * 1000
    max_image_pixels: int = 100_000_000
    render_workers: int = 2
    render_cpu_seconds: float = 120.0
    # Address space one render worker may use (RLIMIT_AS); past it the job fails as
    # too large to render. A worker is replaced after render_worker_calls calls, or
    # after a job that left it holding more than render_worker_rss.
    render_memory: int = RENDER_MEMORY
    render_worker_calls: int = 200
    render_worker_rss: int = 512 * 1024 * 1024
    max_attempts: int = 3
    retry_delay: float = 300.0
    max_age: float = 86_400.0
    libreoffice: str = ""  # path to soffice; empty means look on PATH
    office_timeout: float = 120.0
    policy: DestinationPolicy = DestinationPolicy()
    spool: SpoolSettings = SpoolSettings()
    hylafax: HylafaxSettings = HylafaxSettings()
    sip: SipSettings = SipSettings()

    @property
    def sip_runs(self) -> bool:
        """The SIP user agent runs: to send (carrier "sip") or only to receive."""
        return self.carrier == "sip" or self.sip.receive


@dataclass(frozen=True, slots=True)
class ApiSettings:
    listen: HostPort = HostPort("127.0.0.1", 8080)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    rate_limits: bool = True
    # Where clients reach the API ("https://gw.example.com"), for the links in answers;
    # "": the listen address. The Host header is never used for links.
    public_url: str = ""
    max_connections: int = 1000
    max_connections_per_address: int = 50
    # A request's head must arrive within header_timeout of its first byte (or of the
    # connection); its body may pause at most body_timeout between bytes.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    metrics_token_hash: str = field(default="", repr=False)  # empty: /metrics is open


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The web console under /console/ on the API's listener (docs/console.md)."""

    enabled: bool = True
    # A sign-in lasts this long (the browser then asks for the password again).
    session_lifetime: float = 12 * 3600.0
    # Failed sign-ins for one e-mail address within `lockout` that lock it out...
    max_failures: int = 5
    # ...for this long (even with the right password).
    lockout: float = 15 * 60.0
    # How often the dashboard and the message list refresh themselves.
    refresh_interval: float = 5.0
    # Fax page images (PNG made from the TIFFs) kept on disk under data_dir, at most.
    image_cache_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: LogLevel = "info"
    format: LogFormat = "auto"
    file: Path | None = Path("var/gatewayd.log")


@dataclass(frozen=True, slots=True)
class NotifySettings:
    enabled: bool = False
    relay: HostPort = HostPort("127.0.0.1", 25)
    security: NotifySecurity = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    from_address: str = "gatewayd@localhost"
    fax_results: bool = True
    sms_failures: bool = True
    attach_fax: bool = False


@dataclass(frozen=True, slots=True)
class User:
    emails: tuple[str, ...]
    account_id: int
    extension_id: int
    extension_number: str
    name: str
    sms_numbers: tuple[str, ...] = ()
    fax_number: str = ""
    station_id: str = ""
    smtp_password_hash: str = field(default="", repr=False)
    api_token_hash: str = field(default="", repr=False)
    forward_inbound_sms: bool = False
    forward_inbound_fax: bool = False  # email inbound faxes (as PDF) to the user
    api_admin: bool = False  # this user's token may read every extension of the account
    # False: a trusted integration; its API calls and mail are not rate limited
    # ([api] rate_limits, [smtp] rate_per_minute).
    rate_limits: bool = True


@dataclass(frozen=True, slots=True)
class Settings:
    node: NodeSettings = NodeSettings()
    mailbox: MailboxSettings = MailboxSettings()
    smtp: SmtpSettings = SmtpSettings()
    sms: SmsSettings = SmsSettings()
    fax: FaxSettings = FaxSettings()
    api: ApiSettings = ApiSettings()
    console: ConsoleSettings = ConsoleSettings()
    log: LogSettings = LogSettings()
    notify: NotifySettings = NotifySettings()
    users: tuple[User, ...] = ()
    _by_email: dict[str, User] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        index = {email.lower(): user for user in self.users for email in user.emails}
        object.__setattr__(self, "_by_email", index)

    def user_by_email(self, address: str) -> User | None:
        return self._by_email.get(address.strip().lower())

    def user_by_extension(self, extension_id: int) -> User | None:
        return next((u for u in self.users if u.extension_id == extension_id), None)
