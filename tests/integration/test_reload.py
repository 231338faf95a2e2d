"""SIGHUP: users, policies and the log level are read again from the config file
without dropping connections; an invalid file changes nothing."""

from __future__ import annotations

import asyncio
import signal
import smtplib
from pathlib import Path

import httpx

from gatewayd.credentials import hash_token
from gatewayd.sms.pdu import Status
from tests.integration.test_daemon import start, wait_for
from tests.integration.test_smpp import simulator
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


async def test_an_sms_number_added_by_sighup_receives_at_once(tmp_path: Path) -> None:
    """The inbound handler takes the reloaded users: an SMS to a number given to a user
    by SIGHUP is stored Received (before the reload it is refused, as configured)."""
    async with simulator() as (smsc, sim_port):
        smtp_port, api_port = free_port(), free_port()
        base = (
            f'[mailbox]\ndata_dir = "{tmp_path / "data"}"\n'
            f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
            f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
            f'[fax.spool]\noutbox = "{tmp_path / "out"}"\nresults = "{tmp_path / "res"}"\n'
            '[log]\nformat = "json"\nfile = ""\nlevel = "info"\n'
            '[sms]\nunknown_destination = "refuse"\n'
            f'[[sms.links]]\nname = "sim"\naddress = "127.0.0.1:{sim_port}"\n'
            'system_id = "gatewayd"\npassword = "gatewayd"\n'
        )
        alice = USER.format(email="alice@example.com", ext=101, hash=hash_token("alice-token"))
        config = tmp_path / "gatewayd.toml"
        config.write_text(base + alice)
        daemon = start(config)
        try:
            await asyncio.to_thread(wait_for, daemon, "sms.bound")
            assert await smsc.send_mo("+4915100000001", "+4915112345678", "hello?") == [
                Status.RX_R_APPN
            ]
            config.write_text(base + alice + 'sms_numbers = ["+4915112345678"]\n')
            daemon.send_signal(signal.SIGHUP)
            await asyncio.to_thread(wait_for, daemon, "daemon.reloaded")
            assert await smsc.send_mo("+4915100000001", "+4915112345678", "hello!") == [Status.ROK]
            async with httpx.AsyncClient() as client:
                answer = await client.get(
                    f"http://127.0.0.1:{api_port}/restapi/v1.0/account/~/extension/~/message-store",
                    headers={"Authorization": "Bearer alice-token"},
                )
            [received] = answer.json()["records"]
            assert (received["direction"], received["messageStatus"], received["subject"]) == (
                "Inbound",
                "Received",
                "hello!",
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(daemon.communicate, timeout=60)
        assert daemon.returncode == 0, err
