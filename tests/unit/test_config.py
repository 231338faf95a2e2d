"""The config loader: defaults, the documented file, and every kind of mistake named
with its key, its value and what was expected."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gatewayd import credentials
from gatewayd.config import Settings, config_path, load_config, parse_config
from gatewayd.config.settings import HostPort, SmtpListener, User
from gatewayd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = ROOT / "config" / "gatewayd.toml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return list(caught.value.problems)


def test_the_documented_file_holds_exactly_the_defaults_in_code() -> None:
    loaded = load_config(DOCUMENTED)
    assert dataclasses.replace(loaded, users=()) == Settings()


def _field_names(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _assert_documented(table: dict[str, Any], value: Any, where: str) -> None:
    """Every field of ``value`` appears as a key of ``table`` (nested tables too)."""
    for name in _field_names(type(value)):
        key = "email" if name == "emails" else name
        assert key in table, f"{where}.{key} is not documented in config/gatewayd.toml"
        inner = getattr(value, name)
        if dataclasses.is_dataclass(inner) and not isinstance(inner, HostPort):
            _assert_documented(table[key], inner, f"{where}.{key}")


def test_the_documented_file_names_every_setting() -> None:
    document = tomllib.loads(DOCUMENTED.read_text())
    defaults = Settings()
    for section in ("node", "mailbox", "smtp", "sms", "fax", "api", "console", "log", "notify"):
        value = getattr(defaults, section)
        table = document[section]
        for name in _field_names(type(value)):
            assert name in table, f"{section}.{name} is not documented"
            inner = getattr(value, name)
            if dataclasses.is_dataclass(inner) and not isinstance(inner, HostPort):
                _assert_documented(table[name], inner, f"{section}.{name}")
    _assert_documented(document["sms"]["links"][0], defaults.sms.links[0], "sms.links[0]")
    example_user = User(
        emails=("a@b",), account_id=1, extension_id=1, extension_number="1", name=""
    )
    _assert_documented(document["users"][0], example_user, "users[0]")


def test_an_empty_file_gives_the_defaults() -> None:
    assert parse_config("") == Settings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[smtp]\nlisten = "127.0.0.1:99999"',
            'smtp.listen: "127.0.0.1:99999" is not a valid port (expected HOST:PORT, PORT 1-65535)',
        ),
        (
            '[smtp]\nlisten = "localhost"',
            'smtp.listen: "localhost" is not HOST:PORT (expected HOST:PORT, PORT 1-65535)',
        ),
        (
            '[smtp]\nlisten = ["127.0.0.1:25", "bad host:25"]',
            'smtp.listen[1]: "bad host:25" is not a valid host name '
            "(expected HOST:PORT, PORT 1-65535)",
        ),
        (
            "[smtp]\nlisten = [{ require_auth = true }]",
            "smtp.listen[0].address: missing (expected HOST:PORT)",
        ),
        ('[smtp]\nlisen = "127.0.0.1:25"', 'smtp.lisen: unknown key; did you mean "listen"?'),
        (
            '[smtp]\nmax_message_size = "25 furlongs"',
            'smtp.max_message_size: "25 furlongs" is not a size (expected e.g. "25MB", "512KiB" or '
            "bytes)",
        ),
        (
            '[smtp]\nmax_message_size = "1KB"',
            'smtp.max_message_size: "1KB" is less than the minimum, 1024 bytes',
        ),
        (
            "[smtp]\nmax_recipients = 0",
            "smtp.max_recipients: 0 is not a whole number from 1 to 1000",
        ),
        (
            '[smtp]\ntrusted_networks = ["10.0.0.0/33"]',
            'smtp.trusted_networks[0]: "10.0.0.0/33" is not an IP network (e.g. "10.0.0.0/8")',
        ),
        (
            '[smtp]\ndefault_region = "germany"',
            'smtp.default_region: "germany" is not a two-letter region code (e.g. "DE", "US")',
        ),
        (
            '[smtp]\nfax_domain = "x.example"\nsms_domain = "X.example"',
            'smtp.sms_domain: "X.example" must differ from fax_domain',
        ),
        (
            '[smtp]\nlisten = "0.0.0.0:587"\nrequire_auth = true',
            'smtp.listen: "0.0.0.0:587": require_auth needs tls_cert and tls_key (AUTH is offered '
            "only after STARTTLS) or auth_without_tls on a loopback listener",
        ),
        (
            '[smtp]\nlisten = "0.0.0.0:587"\nauth_without_tls = true',
            'smtp.listen: "0.0.0.0:587": auth_without_tls is allowed only on a loopback address '
            "(127.0.0.1, ::1)",
        ),
        (
            '[smtp]\ntls_cert = "/nonexistent/cert.pem"',
            "smtp.tls_cert: tls_cert and tls_key must be set together",
        ),
        (
            '[mailbox]\nsweep_interval = "5x"',
            'mailbox.sweep_interval: "5x" is not a duration (expected e.g. "250ms", "30s", "5m", '
            '"2h", "1d" or seconds)',
        ),
        (
            '[mailbox]\nsweep_interval = "250ms"',
            'mailbox.sweep_interval: "250ms" is less than the minimum, 1s',
        ),
        (
            "[mailbox]\nretention_deleted_days = -1",
            "mailbox.retention_deleted_days: -1 is not a whole number from 0 to 3650",
        ),
        (
            '[mailbox]\ndatabase_url = "mysql://x"',
            'mailbox.database_url: "mysql://x" is not supported (expected empty for SQLite in '
            "data_dir, sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB)",
        ),
        (
            '[log]\nlevel = "loud"',
            'log.level: "loud" is not one of "debug", "info", "warning", "error"',
        ),
        ("[log]\nformat = 3", 'log.format: 3 is not one of "auto", "json", "console"'),
        ("[console]\nenabled = 1", "console.enabled: 1 is not true or false"),
        (
            '[console]\nsession_lifetime = "10s"',
            'console.session_lifetime: "10s" is less than the minimum, 60s',
        ),
        (
            "[console]\nmax_failures = 0",
            "console.max_failures: 0 is not a whole number from 1 to 1000",
        ),
        (
            '[api]\nlisten = "[::1:8080"',
            'api.listen: "[::1:8080" is not HOST:PORT (expected HOST:PORT, PORT 1-65535)',
        ),
        (
            '[fax]\ncarrier = "modem"',
            'fax.carrier: "modem" is not one of "spool", "hylafax", "sip"',
        ),
        (
            '[fax.sip]\ntransport = "sctp"',
            'fax.sip.transport: "sctp" is not one of "udp", "tcp", "tls"',
        ),
        (
            '[fax.sip]\nproxy = "sip.example.net"',
            'fax.sip.proxy: "sip.example.net" is not HOST:PORT (expected HOST:PORT, PORT 1-65535)',
        ),
        (
            '[fax.sip]\nlocal_address = "myhost:5060"',
            'fax.sip.local_address: "myhost:5060": the host must be an IP address to listen on '
            '(e.g. "0.0.0.0:5060" or "192.0.2.10:5060")',
        ),
        (
            '[fax.sip]\nmedia_ports = "10000"',
            'fax.sip.media_ports: "10000" is not a port range (expected "LOW-HIGH", '
            'e.g. "10000-10999")',
        ),
        (
            '[fax.sip]\nmedia_ports = "20000-10000"',
            'fax.sip.media_ports: "20000-10000" is not a port range within 1024-65535, low to high',
        ),
        (
            '[fax.sip]\nmedia_ports = "10000-10005"\nmax_calls = 4',
            'fax.sip.media_ports: "10000-10005" has 6 ports; 4 calls (max_calls) need at least 8 '
            "(audio and T.38 each)",
        ),
        (
            '[fax.sip]\nusername = "alice smith"',
            'fax.sip.username: "alice smith" is not a SIP user name (letters, digits and '
            "- _ . ! ~ * ' ( ) & = + $ , ; %)",
        ),
        (
            '[fax.sip]\ncaller_id = "+49 30 1234"',
            'fax.sip.caller_id: "+49 30 1234" is not a phone number (digits, optionally "+" first)',
        ),
        (
            '[fax.sip]\nregister_interval = "10s"',
            "fax.sip.register_interval: must be 0 (do not register) or at least 30s",
        ),
        (
            '[fax.sip]\npassword = "x"',
            "fax.sip.password: a password is used only with a username",
        ),
        (
            '[fax.sip]\nusername = "a"\npassword = "x"\npassword_file = "/p"',
            "fax.sip.password: set only one of password, password_file",
        ),
        (
            "[fax.sip]\nmax_calls = 0",
            "fax.sip.max_calls: 0 is not a whole number from 1 to 1000",
        ),
        ('[fax.spool]\noutbx = "x"', 'fax.spool.outbx: unknown key; did you mean "outbox"?'),
        (
            '[fax.policy]\nallowed_countries = ["49"]',
            'fax.policy.allowed_countries: ["49"] is not a list of country calling codes '
            "(e.g. [49, 43, 41])",
        ),
        (
            '[sms.policy]\nrefused_number_types = ["EXPENSIVE"]',
            'sms.policy.refused_number_types[0]: "EXPENSIVE" is not a number type (FIXED_LINE, '
            "MOBILE, FIXED_LINE_OR_MOBILE, TOLL_FREE, PREMIUM_RATE, SHARED_COST, VOIP, "
            "PERSONAL_NUMBER, PAGER, UAN, VOICEMAIL, UNKNOWN)",
        ),
        (
            '[[sms.links]]\nname = "a"\nwindow = 0',
            "sms.links[0].window: 0 is not a whole number from 1 to 1000",
        ),
        (
            '[[sms.links]]\nname = "a"\npassword = "x"\npassword_env = "Y"',
            "sms.links[0].password: set only one of password, password_env",
        ),
        (
            '[[sms.links]]\nname = "a"\npassword_env = "GATEWAYD_TEST_UNSET_VARIABLE"',
            'sms.links[0].password_env: "GATEWAYD_TEST_UNSET_VARIABLE": environment variable is '
            "not set",
        ),
        (
            '[[sms.links]]\nname = "a"\nprefixes = ["49"]',
            'sms.links[0].prefixes[0]: "49" is not a destination prefix '
            '("+" and digits, e.g. "+49")',
        ),
        (
            '[[sms.links]]\nname = "a"\n[[sms.links]]\nname = "a"\ndefault = false\n'
            'prefixes = ["+49"]',
            'sms.links: link name "a" is used 2 times',
        ),
        (
            '[[sms.links]]\nname = "a"\ndefault = false',
            'sms.links[0]: link "a" has no prefixes and is not the default, so nothing would be '
            "routed to it",
        ),
        (
            '[[sms.links]]\nname = "a"\nenquire_link_interval = "5m"\ninactivity_timeout = "1m"',
            "sms.links[0].inactivity_timeout: must be longer than enquire_link_interval",
        ),
        (
            '[notify]\nusername = "relay"',
            "notify.password: a password is needed when username is set",
        ),
        ("[bogus]\nx = 1", "bogus: unknown key"),
        (
            "[smtp]\nmax_connections = 10\nmax_connections_per_address = 20",
            "smtp.max_connections_per_address: must be at most max_connections",
        ),
        (
            '[smtp]\nidle_timeout = "10m"\nsession_timeout = "5m"',
            "smtp.session_timeout: must be at least idle_timeout",
        ),
        (
            "[smtp]\nmax_mime_depth = 1000",
            "smtp.max_mime_depth: 1000 is not a whole number from 2 to 100",
        ),
        (
            '[api]\npublic_url = "gateway.example.com"',
            'api.public_url: "gateway.example.com" is not a base URL (e.g. '
            '"https://gateway.example.com")',
        ),
        (
            '[fax]\nrender_memory = "64MiB"',
            'fax.render_memory: "64MiB" is less than the minimum, 268435456 bytes',
        ),
        (
            '[fax.spool]\nfile_mode = "0644"',
            'fax.spool.file_mode: "0644" gives others access; the spool is never world-readable',
        ),
        (
            '[fax.spool]\ndir_mode = "0570"',
            'fax.spool.dir_mode: "0570" must give the owner at least 0700',
        ),
        (
            '[fax.spool]\nfile_mode = "rw-r-----"',
            'fax.spool.file_mode: "rw-r-----" is not an octal mode (e.g. "0640")',
        ),
        (
            '[sms.policy]\nrefused_ranges = ["881*"]',
            'sms.policy.refused_ranges[0]: "881*" is not an E.164 number or prefix '
            '(e.g. "+881*", "+1???976*")',
        ),
    ],
)
def test_each_mistake_is_named_with_key_value_and_expectation(text: str, expected: str) -> None:
    assert expected in problems(text)


USER = """
[[users]]
email = "alice@example.com"
account_id = 1
extension_id = 101
extension_number = "101"
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            'sms_numbers = ["030 123"]',
            'users[0].sms_numbers[0]: "030 123" is not an E.164 number (+4930123456) or an '
            "alphanumeric sender (11 characters at most)",
        ),
        (
            'fax_number = "0301234"',
            'users[0].fax_number: "0301234" is not an E.164 number (e.g. "+4930123456")',
        ),
        (
            'station_id = "ACME Corp"',
            'users[0].station_id: "ACME Corp" is not a fax station id (digits, "+" and spaces, '
            "20 at most)",
        ),
        (
            'smtp_password_hash = "hunter2"',
            "users[0].smtp_password_hash: (value hidden) is not a hash made by `gatewayd "
            "hash-secret`; put the hash here, never the secret itself",
        ),
    ],
)
def test_user_mistakes(extra: str, expected: str) -> None:
    assert expected in problems(USER + extra)


def test_a_secret_put_where_its_hash_belongs_is_never_echoed() -> None:
    found = problems(USER + 'api_token_hash = "my-very-secret-token"')
    assert not any("my-very-secret-token" in p for p in found)


def test_users_must_be_unique() -> None:
    text = (
        USER
        + 'sms_numbers = ["+4930123456"]\n'
        + USER.replace("101", "102")
        + ('sms_numbers = ["+4930123456"]\n')
    )
    found = problems(text)
    assert 'users: email address "alice@example.com" belongs to 2 users' in found
    assert 'users: sms number "+4930123456" belongs to 2 users' in found


def test_fax_numbers_must_be_unique() -> None:
    text = (
        USER
        + 'fax_number = "+4930123457"\n'
        + USER.replace("101", "102").replace("alice@", "bob@")
        + 'fax_number = "+4930123457"\n'
    )
    assert 'users: fax_number "+4930123457" belongs to 2 users' in problems(text)


def test_a_sip_trunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAYD_TEST_SIP_PASSWORD", "s3cret")
    settings = parse_config(
        '[fax]\ncarrier = "sip"\n[fax.sip]\nproxy = "sip.example.net:5061"\n'
        'registrar = "reg.example.net:5060"\ntransport = "tls"\nusername = "4930123"\n'
        'password_env = "GATEWAYD_TEST_SIP_PASSWORD"\nlocal_address = "192.0.2.10:5070"\n'
        'media_ports = "20000-20099"\nt38 = false\nregister_interval = "5m"\nmax_calls = 8\n'
    )
    sip = settings.fax.sip
    assert settings.fax.sip_runs
    assert sip.proxy == HostPort("sip.example.net", 5061)
    assert sip.registrar == HostPort("reg.example.net", 5060)
    assert sip.transport == "tls"
    assert sip.password == "s3cret"
    assert "s3cret" not in repr(sip)
    assert sip.local_address == HostPort("192.0.2.10", 5070)
    assert sip.media_ports == (20000, 20099)
    assert (sip.t38, sip.register_interval, sip.max_calls) == (False, 300.0, 8)
    assert sip.domain == "sip.example.net"  # from_domain empty: the proxy's host
    assert sip.registers
    defaults = parse_config("").fax
    assert defaults.sip.registrar is None
    assert not defaults.sip_runs
    assert parse_config("[fax.sip]\nreceive = true").fax.sip_runs


def test_required_user_keys() -> None:
    found = problems('[[users]]\nname = "nobody"')
    assert found == [
        "users[0].email: missing",
        "users[0].account_id: missing",
        "users[0].extension_id: missing",
        "users[0].extension_number: missing",
    ]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        '[smtp]\nlisten = "127.0.0.1:99999"\n[log]\nlevel = "loud"\n[mailbox]\nmax_messages = -5\n'
    )
    assert len(found) == 3


def test_a_valid_user_with_secrets_and_several_addresses(tmp_path: Path) -> None:
    secret_file = tmp_path / "smpp.secret"
    secret_file.write_text("s3cret\n")
    text = (
        USER.replace('"alice@example.com"', '["Alice@Example.com", "fax@alice.example"]')
        + f'smtp_password_hash = "{credentials.hash_password("pw")}"\n'
        + f'api_token_hash = "{credentials.hash_token("tok")}"\n'
        + f'[[sms.links]]\nname = "carrier"\npassword_file = "{secret_file}"\n'
    )
    settings = parse_config(text)
    user = settings.users[0]
    assert user.emails == ("alice@example.com", "fax@alice.example")
    assert settings.user_by_email("ALICE@example.com") == user
    assert credentials.verify("pw", user.smtp_password_hash)
    assert settings.sms.links[0].password == "s3cret"


def test_listener_overrides() -> None:
    settings = parse_config(
        f'[smtp]\ntls_cert = "{__file__}"\ntls_key = "{__file__}"\n'
        + 'listen = ["127.0.0.1:25", { address = "[::1]:587", require_auth = true }]'
    )
    assert settings.smtp.listen == (
        SmtpListener(HostPort("127.0.0.1", 25)),
        SmtpListener(HostPort("::1", 587), require_auth=True),
    )
    assert str(settings.smtp.listen[1].address) == "[::1]:587"


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ('"250ms"', 0.25),
        ('"30s"', 30.0),
        ('"5m"', 300.0),
        ('"2h"', 7200.0),
        ('"1.5d"', 129600.0),
        ("45", 45.0),
        ("2.5", 2.5),
    ],
)
def test_durations(written: str, seconds: float) -> None:
    settings = parse_config(f'[[sms.links]]\nname = "a"\nresponse_timeout = {written}')
    assert settings.sms.links[0].response_timeout == seconds


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ('"10MiB"', 10 * 1024 * 1024),
        ('"25MB"', 25_000_000),
        ('"512 KiB"', 524_288),
        ("4096", 4096),
        ('"2gb"', 2_000_000_000),
    ],
)
def test_sizes(written: str, size: int) -> None:
    assert parse_config(f"[smtp]\nmax_message_size = {written}").smtp.max_message_size == size


def test_broken_toml_says_where() -> None:
    found = problems("[smtp\nlisten = 1")
    assert found[0].startswith("not valid TOML:")
    assert "line 1" in found[0]


def test_where_the_config_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAYD_CONFIG", "/from/env.toml")
    assert config_path("/from/cli.toml") == Path("/from/cli.toml")
    assert config_path(None) == Path("/from/env.toml")
    monkeypatch.delenv("GATEWAYD_CONFIG")
    assert config_path(None) == Path("/etc/gatewayd/gatewayd.toml")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the config file does not exist"):
        load_config(tmp_path / "nope.toml")
