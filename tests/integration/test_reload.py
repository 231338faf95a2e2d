"""SIGHUP: users, policies and the log level are read again from the config file
without dropping connections; an invalid file changes nothing."""

from __future__ import annotations

import signal
import smtplib
from pathlib import Path

import httpx

from gatewayd.credentials import hash_token
from tests.integration.test_daemon import start, wait_for
from tests.smtp_client import free_port

USER = (
    '[[users]]\nemail = "{email}"\naccount_id = 1\nextension_id = {ext}\n'
    'extension_number = "{ext}"\napi_token_hash = "{hash}"\n'
)


def test_sighup_reloads_users_without_dropping_connections(tmp_path: Path) -> None:
    smtp_port, api_port = free_port(), free_port()
    base = (
        f'[mailbox]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
        f'[fax.spool]\noutbox = "{tmp_path / "out"}"\nresults = "{tmp_path / "res"}"\n'
        '[log]\nformat = "json"\nfile = ""\nlevel = "info"\n'
    )
    alice = USER.format(email="alice@example.com", ext=101, hash=hash_token("alice-token"))
    bob = USER.format(email="bob@example.com", ext=102, hash=hash_token("bob-token"))
    config = tmp_path / "gatewayd.toml"
    config.write_text(base + alice)
    daemon = start(config)
    url = f"http://127.0.0.1:{api_port}/restapi/v1.0/account/~/extension/~/message-store"
    try:
        wait_for(daemon, "daemon.started")
        client = smtplib.SMTP("127.0.0.1", smtp_port, timeout=30)
        client.ehlo("client.example")
        bob_auth = {"Authorization": "Bearer bob-token"}
        assert httpx.get(url, headers=bob_auth).status_code == 401
        config.write_text(base + alice + bob)
        daemon.send_signal(signal.SIGHUP)
        reloaded = wait_for(daemon, "daemon.reloaded")[-1]
        assert (reloaded["users"], reloaded["needs_restart"]) == (2, [])
        assert httpx.get(url, headers=bob_auth).status_code == 200
        assert client.noop()[0] == 250  # the connection from before the reload
        config.write_text(base + alice + "[smtp]\nbogus = 1\n")
        daemon.send_signal(signal.SIGHUP)
        failed = wait_for(daemon, "daemon.reload_failed")[-1]
        assert failed["problems"]
        assert httpx.get(url, headers=bob_auth).status_code == 200  # nothing changed
        client.quit()
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
