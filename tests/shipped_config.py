"""config/gatewayd.toml, as shipped, pointed at a test's own directories and ports."""

from __future__ import annotations

from pathlib import Path

from tests.smtp_client import free_port

ROOT = Path(__file__).resolve().parent.parent


def shipped_config(
    work: Path,
    *,
    smtp_port: int | None = None,
    api_port: int | None = None,
    sim_port: int | None = None,
    relay_port: int | None = None,
    token_hash: str = "",
    log_file: Path | None = None,
    level: str = "info",
) -> Path:
    """Write ``work/gatewayd.toml``: the shipped config with its mailbox, spool and log
    under ``work``, its listeners on free loopback ports (or the ones given), the SMPP
    link on ``sim_port``, notifications on through ``relay_port`` when given, and
    ``token_hash`` as the example user's API token. JSON logs; no log file unless
    ``log_file``."""
    text = (ROOT / "config" / "gatewayd.toml").read_text()
    for old, new in (
        ('data_dir = "var"', f'data_dir = "{work / "data"}"'),
        ('listen = ["127.0.0.1:2525"]', f'listen = ["127.0.0.1:{smtp_port or free_port()}"]'),
        ('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{api_port or free_port()}"'),
        ('address = "127.0.0.1:2775"', f'address = "127.0.0.1:{sim_port or free_port()}"'),
        ('outbox = "var/fax/outbox"', f'outbox = "{work / "outbox"}"'),
        ('results = "var/fax/results"', f'results = "{work / "results"}"'),
        ('\nformat = "auto"', '\nformat = "json"'),
        ('level = "info"', f'level = "{level}"'),
        ('file = "var/gatewayd.log"', f'file = "{log_file or ""}"'),
        ('api_token_hash = ""', f'api_token_hash = "{token_hash}"'),
    ):
        assert old in text, f"config/gatewayd.toml no longer has {old!r}"
        text = text.replace(old, new, 1)
    if relay_port is not None:
        off = 'enabled = false\nrelay = "127.0.0.1:25"'
        assert off in text
        text = text.replace(off, f'enabled = true\nrelay = "127.0.0.1:{relay_port}"')
    path = work / "gatewayd.toml"
    path.write_text(text)
    return path
