"""Load and validate the TOML config in one pass into ``Settings``.

Where the file comes from: ``--config PATH``, else ``$GATEWAYD_CONFIG``, else
``/etc/gatewayd/gatewayd.toml``. Every problem is collected, then raised together
in one ``ConfigError``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from gatewayd import credentials
from gatewayd.config import settings as s
from gatewayd.config.reader import Problems, TableReader, show
from gatewayd.errors import ConfigError

DEFAULT_PATH = Path("/etc/gatewayd/gatewayd.toml")
ENV_VAR = "GATEWAYD_CONFIG"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_STATION_ID = re.compile(r"^[0-9+ ]{0,20}$")  # T.30 TSI: digits, "+" and space, 20 at most
_EXTENSION_NUMBER = re.compile(r"^[0-9]{1,8}$")
_REGION = re.compile(r"^[A-Z]{2}$")
_LINK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_PREFIX = re.compile(r"^\+[0-9]{1,14}$")
_DENY_ENTRY = re.compile(r"^\+[0-9?]{1,15}\*?$")
_SIP_USER = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=%-]{1,64}$")
_CALLER_ID = re.compile(r"^$|^\+?[0-9]{1,20}$")
_PORT_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")
_PUBLIC_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[^\s?#]*)?$")
_MODE = re.compile(r"^[0-7]{3,4}$")
_NUMBER_TYPES = (
    "FIXED_LINE",
    "MOBILE",
    "FIXED_LINE_OR_MOBILE",
    "TOLL_FREE",
    "PREMIUM_RATE",
    "SHARED_COST",
    "VOIP",
    "PERSONAL_NUMBER",
    "PAGER",
    "UAN",
    "VOICEMAIL",
    "UNKNOWN",
)


def config_path(cli_value: str | None) -> Path:
    if cli_value:
        return Path(cli_value)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return DEFAULT_PATH


def load_config(path: Path) -> s.Settings:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["the config file does not exist"], source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"the config file cannot be read ({exc})"], source=str(path)) from exc
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<config>") -> s.Settings:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=source) from exc
    problems = Problems()
    root = TableReader(document, "", problems)
    settings = s.Settings(
        node=_node(root.table("node")),
        mailbox=_mailbox(root.table("mailbox")),
        smtp=_smtp(root.table("smtp")),
        sms=_sms(root.table("sms")),
        fax=_fax(root.table("fax")),
        api=_api(root.table("api")),
        console=_console(root.table("console")),
        log=_log(root.table("log")),
        notify=_notify(root.table("notify")),
        users=_users(root, problems),
    )
    root.finish()
    if problems.items:
        raise ConfigError(problems.items, source=source)
    return settings


def _choices(alias: Any) -> tuple[str, ...]:
    return tuple(get_args(alias))


_NODE_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,62})?$")


def _node(t: TableReader) -> s.NodeSettings:
    d = s.NodeSettings()
    interval = t.duration("heartbeat_interval", d.heartbeat_interval, minimum=0.5)
    stale = t.duration("stale_after", d.stale_after, minimum=2)
    if stale < 3 * interval:
        t.problem("stale_after", "must be at least three heartbeat_interval")
    result = s.NodeSettings(
        name=t.string(
            "name",
            d.name,
            pattern=_NODE_NAME,
            expected="is not a node name (letters, digits, '.', '_', '-'; at most 63)",
        ),
        heartbeat_interval=interval,
        stale_after=stale,
    )
    t.finish()
    return result


def _mailbox(t: TableReader) -> s.MailboxSettings:
    d = s.MailboxSettings()
    url = t.string("database_url", d.database_url)
    if url and not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        t.problem(
            "database_url",
            f"{show(url)} is not supported (expected empty for SQLite in data_dir, "
            "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB)",
        )
        url = d.database_url
    result = s.MailboxSettings(
        data_dir=t.path("data_dir", d.data_dir) or d.data_dir,
        database_url=url,
        sqlite_synchronous=t.choice(
            "sqlite_synchronous", d.sqlite_synchronous, _choices(s.Synchronous)
        ),
        retention_deleted_days=t.integer(
            "retention_deleted_days", d.retention_deleted_days, minimum=0, maximum=3650
        ),
        retention_purged_days=t.integer(
            "retention_purged_days", d.retention_purged_days, minimum=0, maximum=3650
        ),
        max_messages=t.integer("max_messages", d.max_messages, minimum=0),
        sweep_interval=t.duration("sweep_interval", d.sweep_interval, minimum=1),
        lease_timeout=t.duration("lease_timeout", d.lease_timeout, minimum=5),
    )
    t.finish()
    return result


def _tls_pair(t: TableReader) -> tuple[Path | None, Path | None]:
    cert, key = t.path("tls_cert", None), t.path("tls_key", None)
    if (cert is None) != (key is None):
        t.problem("tls_cert", "tls_cert and tls_key must be set together")
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if path is not None and not path.is_file():
            t.problem(name, f"{show(str(path))} is not a readable file")
    return cert, key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _smtp(t: TableReader) -> s.SmtpSettings:
    d = s.SmtpSettings()
    require_auth = t.boolean("require_auth", d.require_auth)
    auth_without_tls = t.boolean("auth_without_tls", d.auth_without_tls)
    cert, key = _tls_pair(t)
    listeners = _smtp_listeners(t, d, require_auth, auth_without_tls)
    for index, listener in enumerate(listeners):
        where = "listen" if len(listeners) == 1 else f"listen[{index}]"
        if listener.auth_without_tls and not _is_loopback(listener.address.host):
            t.problem(
                where,
                f"{show(str(listener.address))}: auth_without_tls is allowed only "
                "on a loopback address (127.0.0.1, ::1)",
            )
        if listener.require_auth and cert is None and not listener.auth_without_tls:
            t.problem(
                where,
                f"{show(str(listener.address))}: require_auth needs tls_cert and "
                "tls_key (AUTH is offered only after STARTTLS) or auth_without_tls "
                "on a loopback listener",
            )
    networks = t.string_list(
        "trusted_networks",
        d.trusted_networks,
        item=_network,
        expected='is not an IP network (e.g. "10.0.0.0/8")',
    )
    host_name = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
    expected_domain = "is not a domain name"
    fax_domain = t.string("fax_domain", d.fax_domain, pattern=host_name, expected=expected_domain)
    sms_domain = t.string("sms_domain", d.sms_domain, pattern=host_name, expected=expected_domain)
    if fax_domain.lower() == sms_domain.lower():
        t.problem("sms_domain", f"{show(sms_domain)} must differ from fax_domain")
    result = s.SmtpSettings(
        listen=listeners,
        hostname=t.string("hostname", d.hostname, pattern=host_name, expected="is not a host name"),
        require_auth=require_auth,
        auth_without_tls=auth_without_tls,
        tls_cert=cert,
        tls_key=key,
        trusted_networks=networks,
        fax_domain=fax_domain.lower(),
        sms_domain=sms_domain.lower(),
        domains=tuple(
            x.lower()
            for x in t.string_list(
                "domains",
                d.domains,
                item=lambda v: v if host_name.match(v) else None,
                expected=expected_domain,
            )
        ),
        default_region=t.string(
            "default_region",
            d.default_region,
            pattern=_REGION,
            expected='is not a two-letter region code (e.g. "DE", "US")',
        ),
        allow_from_mismatch=t.boolean("allow_from_mismatch", d.allow_from_mismatch),
        max_message_size=t.size("max_message_size", d.max_message_size, minimum=1024),
        max_recipients=t.integer("max_recipients", d.max_recipients, minimum=1, maximum=1000),
        rate_per_minute=t.integer("rate_per_minute", d.rate_per_minute, minimum=0),
        max_connections=t.integer(
            "max_connections", d.max_connections, minimum=1, maximum=1_000_000
        ),
        max_connections_per_address=t.integer(
            "max_connections_per_address", d.max_connections_per_address, minimum=1
        ),
        idle_timeout=t.duration("idle_timeout", d.idle_timeout, minimum=1),
        session_timeout=t.duration("session_timeout", d.session_timeout, minimum=1),
        auth_failures_per_connection=t.integer(
            "auth_failures_per_connection", d.auth_failures_per_connection, minimum=1
        ),
        auth_failures_per_address=t.integer(
            "auth_failures_per_address", d.auth_failures_per_address, minimum=1
        ),
        max_mime_depth=t.integer("max_mime_depth", d.max_mime_depth, minimum=2, maximum=100),
        max_mime_parts=t.integer("max_mime_parts", d.max_mime_parts, minimum=2),
    )
    _caps(t, result.max_connections, result.max_connections_per_address)
    if result.session_timeout < result.idle_timeout:
        t.problem("session_timeout", "must be at least idle_timeout")
    t.finish()
    return result


def _caps(t: TableReader, total: int, per_address: int) -> None:
    if per_address > total:
        t.problem("max_connections_per_address", "must be at most max_connections")


def _network(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


def _smtp_listeners(
    t: TableReader, d: s.SmtpSettings, require_auth: bool, auth_without_tls: bool
) -> tuple[s.SmtpListener, ...]:
    if not t.has("listen"):
        return tuple(s.SmtpListener(x.address, require_auth, auth_without_tls) for x in d.listen)
    value = t.raw("listen")
    entries = [value] if isinstance(value, str | Mapping) else value
    if not isinstance(entries, list) or not entries:
        t.problem("listen", f"{show(value)} is not HOST:PORT or a list of them")
        return d.listen
    listeners: list[s.SmtpListener] = []
    fallback = d.listen[0].address
    for index, entry in enumerate(entries):
        name = "listen" if isinstance(value, str) else f"listen[{index}]"
        if isinstance(entry, Mapping):
            sub = t.child(entry, name)
            if sub.has("address"):
                address = sub.parse_address("address", sub.raw("address"), fallback)
            else:
                address = fallback
                sub.problem("address", "missing (expected HOST:PORT)")
            listeners.append(
                s.SmtpListener(
                    address,
                    sub.boolean("require_auth", require_auth),
                    sub.boolean("auth_without_tls", auth_without_tls),
                )
            )
            sub.finish()
        else:
            address = t.parse_address(name, entry, fallback)
            listeners.append(s.SmtpListener(address, require_auth, auth_without_tls))
    seen = Counter(str(x.address) for x in listeners)
    for listed, count in seen.items():
        if count > 1:
            t.problem("listen", f"{show(listed)} is listed {count} times")
    return tuple(listeners)


def _policy(t: TableReader, d: s.DestinationPolicy) -> s.DestinationPolicy:
    countries_raw = t.raw("allowed_countries")
    countries = d.allowed_countries
    if countries_raw is not None:
        if isinstance(countries_raw, list) and all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 999 for c in countries_raw
        ):
            countries = tuple(countries_raw)
        else:
            t.problem(
                "allowed_countries",
                f"{show(countries_raw)} is not a list of country calling codes (e.g. [49, 43, 41])",
            )
    return s.DestinationPolicy(
        allowed_countries=countries,
        refused_number_types=t.string_list(
            "refused_number_types",
            d.refused_number_types,
            item=lambda v: v if v in _NUMBER_TYPES else None,
            expected=f"is not a number type ({', '.join(_NUMBER_TYPES)})",
        ),
        deny=t.string_list(
            "deny",
            d.deny,
            item=lambda v: v if _DENY_ENTRY.match(v) else None,
            expected='is not an E.164 number or prefix (e.g. "+4990", "+491*", "+1???976*")',
        ),
        refused_ranges=t.string_list(
            "refused_ranges",
            d.refused_ranges,
            item=lambda v: v if _DENY_ENTRY.match(v) else None,
            expected='is not an E.164 number or prefix (e.g. "+881*", "+1???976*")',
        ),
    )


def _sms(t: TableReader) -> s.SmsSettings:
    d = s.SmsSettings()
    policy_t = t.table("policy")
    link_tables = t.tables("links")
    links = d.links if link_tables is None else tuple(_link(x) for x in link_tables)
    if link_tables is not None and not links:
        t.problem("links", "at least one [[sms.links]] is needed")
    for name, count in Counter(x.name for x in links).items():
        if count > 1:
            t.problem("links", f"link name {show(name)} is used {count} times")
    defaults = [x.name for x in links if x.default]
    if len(defaults) > 1:
        t.problem("links", f"only one link may be the default; {', '.join(defaults)} all are")
    for index, link in enumerate(links):
        if not link.default and not link.prefixes:
            t.problem(
                f"links[{index}]",
                f"link {show(link.name)} has no prefixes and is not "
                "the default, so nothing would be routed to it",
            )
    result = s.SmsSettings(
        max_parts=t.integer("max_parts", d.max_parts, minimum=1, maximum=255),
        max_attempts=t.integer("max_attempts", d.max_attempts, minimum=1),
        max_age=t.duration("max_age", d.max_age, minimum=1),
        retry_delay=t.duration("retry_delay", d.retry_delay, minimum=0.1),
        accepted_is_delivered=t.boolean("accepted_is_delivered", d.accepted_is_delivered),
        unknown_destination=t.choice(
            "unknown_destination", d.unknown_destination, _choices(s.UnknownDestination)
        ),
        reassembly_timeout=t.duration("reassembly_timeout", d.reassembly_timeout, minimum=1),
        policy=_policy(policy_t, d.policy),
        links=links,
    )
    policy_t.finish()
    t.finish()
    return result


def _link(t: TableReader) -> s.SmppLinkSettings:
    d = s.SmppLinkSettings()
    prefix_expected = 'is not a destination prefix ("+" and digits, e.g. "+49")'
    result = s.SmppLinkSettings(
        name=t.string(
            "name",
            d.name,
            pattern=_LINK_NAME,
            expected="is not a link name (letters, digits, _ . -; 32 at most)",
        ),
        address=t.host_port("address", d.address),
        system_id=t.string(
            "system_id",
            d.system_id,
            pattern=re.compile(r"^.{1,15}$"),
            expected="is not a system_id (1 to 15 characters)",
        ),
        password=t.secret("password", d.password),
        system_type=t.string(
            "system_type",
            d.system_type,
            pattern=re.compile(r"^.{0,12}$"),
            expected="is not a system_type (12 characters at most)",
        ),
        addr_range=t.string(
            "addr_range",
            d.addr_range,
            pattern=re.compile(r"^.{0,40}$"),
            expected="is not an addr_range (40 characters at most)",
        ),
        bind=t.choice("bind", d.bind, _choices(s.BindMode)),
        tls=t.boolean("tls", d.tls),
        window=t.integer("window", d.window, minimum=1, maximum=1000),
        tps=t.number("tps", d.tps),
        prefixes=t.string_list(
            "prefixes",
            d.prefixes,
            item=lambda v: v if _PREFIX.match(v) else None,
            expected=prefix_expected,
        ),
        default=t.boolean("default", d.default),
        concatenation=t.choice("concatenation", d.concatenation, _choices(s.Concatenation)),
        data_coding=t.integer("data_coding", d.data_coding, minimum=0, maximum=255),
        registered_delivery=t.boolean("registered_delivery", d.registered_delivery),
        smsc_id_format=t.choice("smsc_id_format", d.smsc_id_format, _choices(s.SmscIdFormat)),
        bind_timeout=t.duration("bind_timeout", d.bind_timeout, minimum=0.1),
        enquire_link_interval=t.duration(
            "enquire_link_interval", d.enquire_link_interval, minimum=1
        ),
        response_timeout=t.duration("response_timeout", d.response_timeout, minimum=0.1),
        inactivity_timeout=t.duration("inactivity_timeout", d.inactivity_timeout, minimum=1),
        reconnect_delay=t.duration("reconnect_delay", d.reconnect_delay, minimum=0.1),
        reconnect_delay_max=t.duration("reconnect_delay_max", d.reconnect_delay_max, minimum=0.1),
    )
    if result.reconnect_delay_max < result.reconnect_delay:
        t.problem("reconnect_delay_max", "must be at least reconnect_delay")
    if result.inactivity_timeout <= result.enquire_link_interval:
        t.problem("inactivity_timeout", "must be longer than enquire_link_interval")
    t.finish()
    return result


def _fax(t: TableReader) -> s.FaxSettings:
    d = s.FaxSettings()
    spool_t, hylafax_t, policy_t = t.table("spool"), t.table("hylafax"), t.table("policy")
    sip_t = t.table("sip")
    spool = s.SpoolSettings(
        outbox=spool_t.path("outbox", d.spool.outbox) or d.spool.outbox,
        results=spool_t.path("results", d.spool.results) or d.spool.results,
        group=spool_t.string(
            "group",
            d.spool.group,
            pattern=re.compile(r"^$|^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"),
            expected="is not a group name",
        ),
        file_mode=_mode(spool_t, "file_mode", d.spool.file_mode, owner=0o600),
        dir_mode=_mode(spool_t, "dir_mode", d.spool.dir_mode, owner=0o700),
    )
    dh = d.hylafax
    hylafax = s.HylafaxSettings(
        address=hylafax_t.host_port("address", dh.address),
        username=hylafax_t.string("username", dh.username),
        password=hylafax_t.secret("password", dh.password),
        poll_interval=hylafax_t.duration("poll_interval", dh.poll_interval, minimum=1),
        max_dials=hylafax_t.integer("max_dials", dh.max_dials, minimum=1, maximum=100),
        max_tries=hylafax_t.integer("max_tries", dh.max_tries, minimum=1, maximum=100),
        kill_time=hylafax_t.duration("kill_time", dh.kill_time, minimum=60),
        modem=hylafax_t.string("modem", dh.modem),
    )
    result = s.FaxSettings(
        carrier=t.choice("carrier", d.carrier, _choices(s.FaxCarrierName)),
        resolution=t.choice("resolution", d.resolution, _choices(s.Resolution)),
        paper=t.choice("paper", d.paper, _choices(s.Paper)),
        compression=t.choice("compression", d.compression, _choices(s.Compression)),
        cover=t.boolean("cover", d.cover),
        max_attachments=t.integer("max_attachments", d.max_attachments, minimum=1),
        max_pages=t.integer("max_pages", d.max_pages, minimum=1, maximum=10_000),
        max_input_bytes=t.size("max_input_bytes", d.max_input_bytes),
        max_image_pixels=t.integer("max_image_pixels", d.max_image_pixels, minimum=1),
        render_workers=t.integer("render_workers", d.render_workers, minimum=1, maximum=64),
        render_cpu_seconds=t.duration("render_cpu_seconds", d.render_cpu_seconds, minimum=1),
        render_memory=t.size("render_memory", d.render_memory, minimum=256 * 1024 * 1024),
        render_worker_calls=t.integer("render_worker_calls", d.render_worker_calls, minimum=0),
        render_worker_rss=t.size("render_worker_rss", d.render_worker_rss, minimum=0),
        max_attempts=t.integer("max_attempts", d.max_attempts, minimum=1),
        retry_delay=t.duration("retry_delay", d.retry_delay, minimum=1),
        max_age=t.duration("max_age", d.max_age, minimum=60),
        libreoffice=t.string("libreoffice", d.libreoffice),
        office_timeout=t.duration("office_timeout", d.office_timeout, minimum=1),
        policy=_policy(policy_t, d.policy),
        spool=spool,
        hylafax=hylafax,
        sip=_sip(sip_t),
    )
    for sub in (spool_t, hylafax_t, policy_t, sip_t, t):
        sub.finish()
    return result


def _sip(t: TableReader) -> s.SipSettings:
    d = s.SipSettings()
    user_expected = "is not a SIP user name (letters, digits and - _ . ! ~ * ' ( ) & = + $ , ; %)"
    host_name = re.compile(r"^$|^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
    registrar = d.registrar
    if t.has("registrar") and t.raw("registrar") != "":
        registrar = t.host_port("registrar", d.proxy)
    local = t.host_port("local_address", d.local_address)
    try:
        ipaddress.ip_address(local.host)
    except ValueError:
        t.problem(
            "local_address",
            f"{show(str(local))}: the host must be an IP address to listen on "
            '(e.g. "0.0.0.0:5060" or "192.0.2.10:5060")',
        )
        local = d.local_address
    sip_user = re.compile(r"^$|" + _SIP_USER.pattern)
    username = t.string("username", d.username, pattern=sip_user, expected=user_expected)
    result = s.SipSettings(
        proxy=t.host_port("proxy", d.proxy),
        registrar=registrar,
        transport=t.choice("transport", d.transport, _choices(s.SipTransport)),
        username=username,
        password=t.secret("password", d.password),
        from_user=t.string(
            "from_user",
            d.from_user,
            pattern=sip_user,
            expected=user_expected,
        ),
        from_domain=t.string(
            "from_domain", d.from_domain, pattern=host_name, expected="is not a domain name"
        ),
        caller_id=t.string(
            "caller_id",
            d.caller_id,
            pattern=_CALLER_ID,
            expected='is not a phone number (digits, optionally "+" first)',
        ),
        local_address=local,
        media_ports=_port_range(t, "media_ports", d.media_ports),
        t38=t.boolean("t38", d.t38),
        ecm=t.boolean("ecm", d.ecm),
        register_interval=t.duration("register_interval", d.register_interval),
        max_calls=t.integer("max_calls", d.max_calls, minimum=1, maximum=1000),
        receive=t.boolean("receive", d.receive),
    )
    if 0 < result.register_interval < 30:
        t.problem("register_interval", "must be 0 (do not register) or at least 30s")
    if result.password and not result.username:
        t.problem("password", "a password is used only with a username")
    low, high = result.media_ports
    if high - low + 1 < 2 * result.max_calls:
        t.problem(
            "media_ports",
            f'"{low}-{high}" has {high - low + 1} ports; {result.max_calls} calls '
            f"(max_calls) need at least {2 * result.max_calls} (audio and T.38 each)",
        )
    return result


def _port_range(t: TableReader, name: str, default: tuple[int, int]) -> tuple[int, int]:
    value = t.raw(name)
    if value is None:
        return default
    match = _PORT_RANGE.match(value) if isinstance(value, str) else None
    if match is None:
        t.problem(
            name, f'{show(value)} is not a port range (expected "LOW-HIGH", e.g. "10000-10999")'
        )
        return default
    low, high = int(match.group(1)), int(match.group(2))
    if not 1024 <= low <= high <= 65535:
        t.problem(name, f"{show(value)} is not a port range within 1024-65535, low to high")
        return default
    return low, high


def _mode(t: TableReader, name: str, default: int, *, owner: int) -> int:
    """A permission mode written in octal ("0640"); never open to others, and at least
    ``owner`` for the daemon itself."""
    value = t.string(name, f"{default:04o}")
    if not _MODE.match(value):
        t.problem(name, f'{show(value)} is not an octal mode (e.g. "0640")')
        return default
    mode = int(value, 8)
    if mode & 0o007:
        t.problem(name, f"{show(value)} gives others access; the spool is never world-readable")
        return default
    if mode & owner != owner:
        t.problem(name, f"{show(value)} must give the owner at least {owner:04o}")
        return default
    return mode


def _api(t: TableReader) -> s.ApiSettings:
    d = s.ApiSettings()
    cert, key = _tls_pair(t)
    result = s.ApiSettings(
        listen=t.host_port("listen", d.listen),
        tls_cert=cert,
        tls_key=key,
        rate_limits=t.boolean("rate_limits", d.rate_limits),
        public_url=t.string(
            "public_url",
            d.public_url,
            pattern=re.compile(r"^$|" + _PUBLIC_URL.pattern),
            expected='is not a base URL (e.g. "https://gateway.example.com")',
        ).rstrip("/"),
        max_connections=t.integer(
            "max_connections", d.max_connections, minimum=1, maximum=1_000_000
        ),
        max_connections_per_address=t.integer(
            "max_connections_per_address", d.max_connections_per_address, minimum=1
        ),
        header_timeout=t.duration("header_timeout", d.header_timeout, minimum=0.1),
        body_timeout=t.duration("body_timeout", d.body_timeout, minimum=0.1),
        metrics_token_hash=_secret_hash(t, "metrics_token_hash"),
    )
    _caps(t, result.max_connections, result.max_connections_per_address)
    t.finish()
    return result


def _console(t: TableReader) -> s.ConsoleSettings:
    d = s.ConsoleSettings()
    result = s.ConsoleSettings(
        enabled=t.boolean("enabled", d.enabled),
        session_lifetime=t.duration("session_lifetime", d.session_lifetime, minimum=60),
        max_failures=t.integer("max_failures", d.max_failures, minimum=1, maximum=1000),
        lockout=t.duration("lockout", d.lockout, minimum=1),
        refresh_interval=t.duration("refresh_interval", d.refresh_interval, minimum=1),
        image_cache_bytes=t.size("image_cache_bytes", d.image_cache_bytes, minimum=1024 * 1024),
    )
    t.finish()
    return result


def _log(t: TableReader) -> s.LogSettings:
    d = s.LogSettings()
    result = s.LogSettings(
        level=t.choice("level", d.level, _choices(s.LogLevel)),
        format=t.choice("format", d.format, _choices(s.LogFormat)),
        file=t.path("file", d.file),
    )
    t.finish()
    return result


def _notify(t: TableReader) -> s.NotifySettings:
    d = s.NotifySettings()
    result = s.NotifySettings(
        enabled=t.boolean("enabled", d.enabled),
        relay=t.host_port("relay", d.relay),
        security=t.choice("security", d.security, _choices(s.NotifySecurity)),
        username=t.string("username", d.username),
        password=t.secret("password", d.password),
        from_address=t.string(
            "from_address", d.from_address, pattern=_EMAIL, expected="is not an email address"
        ),
        fax_results=t.boolean("fax_results", d.fax_results),
        sms_failures=t.boolean("sms_failures", d.sms_failures),
        attach_fax=t.boolean("attach_fax", d.attach_fax),
    )
    if result.username and not result.password:
        t.problem("password", "a password is needed when username is set")
    t.finish()
    return result


def _sms_number(value: str) -> str | None:
    return value if _E164.match(value) or _ALPHANUMERIC_SENDER.match(value) else None


def _user(t: TableReader) -> s.User | None:
    for required in ("email", "account_id", "extension_id", "extension_number"):
        if not t.has(required):
            t.problem(required, "missing")
    emails = t.string_list(
        "email",
        (),
        item=lambda v: v.lower() if _EMAIL.match(v) else None,
        expected="is not an email address",
    )
    user = s.User(
        emails=emails,
        account_id=t.integer("account_id", 0, minimum=1, maximum=2**53 - 1),
        extension_id=t.integer("extension_id", 0, minimum=1, maximum=2**53 - 1),
        extension_number=t.string(
            "extension_number",
            "",
            pattern=_EXTENSION_NUMBER,
            expected="is not an extension number (1 to 8 digits)",
        ),
        name=t.string("name", ""),
        sms_numbers=t.string_list(
            "sms_numbers",
            (),
            item=_sms_number,
            expected="is not an E.164 number (+4930123456) or an "
            "alphanumeric sender (11 characters at most)",
        ),
        fax_number=t.string(
            "fax_number",
            "",
            pattern=re.compile(r"^$|" + _E164.pattern),
            expected='is not an E.164 number (e.g. "+4930123456")',
        ),
        station_id=t.string(
            "station_id",
            "",
            pattern=_STATION_ID,
            expected='is not a fax station id (digits, "+" and spaces, 20 at most)',
        ),
        smtp_password_hash=_secret_hash(t, "smtp_password_hash"),
        api_token_hash=_secret_hash(t, "api_token_hash"),
        forward_inbound_sms=t.boolean("forward_inbound_sms", False),
        forward_inbound_fax=t.boolean("forward_inbound_fax", False),
        api_admin=t.boolean("api_admin", False),
        rate_limits=t.boolean("rate_limits", True),
    )
    t.finish()
    if not (user.emails and user.account_id and user.extension_id and user.extension_number):
        return None
    return user


def _secret_hash(t: TableReader, name: str) -> str:
    """A hash made by ``gatewayd hash-secret``; the value is never echoed in a problem,
    since a wrong value here is often the secret itself."""
    value = t.string(name, "")
    if value and not credentials.is_hash(value):
        t.problem(
            name,
            "(value hidden) is not a hash made by `gatewayd hash-secret`; "
            "put the hash here, never the secret itself",
        )
        return ""
    return value


def _users(root: TableReader, problems: Problems) -> tuple[s.User, ...]:
    tables = root.tables("users") or []
    users = [u for u in (_user(t) for t in tables) if u is not None]
    _unique(problems, "users", "email address", [e for u in users for e in u.emails])
    _unique(problems, "users", "extension_id", [str(u.extension_id) for u in users])
    _unique(
        problems,
        "users",
        "extension_number",
        [f"{u.account_id}/{u.extension_number}" for u in users],
    )
    _unique(problems, "users", "sms number", [n for u in users for n in u.sms_numbers])
    _unique(problems, "users", "fax_number", [u.fax_number for u in users if u.fax_number])
    return tuple(users)


def _unique(problems: Problems, key: str, what: str, values: list[str]) -> None:
    for value, count in Counter(values).items():
        if count > 1:
            problems.add(key, f"{what} {show(value)} belongs to {count} users")
