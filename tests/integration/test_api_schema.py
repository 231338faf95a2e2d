"""schemathesis (from PyPI) against the running daemon's /openapi.json: generated
requests, valid and invalid, for every operation; the run must find no server error
and no response that breaks the schema. The daemon is a real ``gatewayd run``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gatewayd.credentials import hash_token
from tests.conftest import ROOT
from tests.integration.test_daemon import start
from tests.smtp_client import free_port

TOKEN = "schemathesis-token"
CONFIG = """\
# schemathesis 4: every check, except one that cannot hold for multipart forms (on the
# wire every form value is a string, so "a number where a string belongs" is valid).
headers = {{ Authorization = "Bearer {token}" }}
request-timeout = 20
max-failures = 10

[generation]
max-examples = {examples}
database = "none"

[parameters]
"path.accountId" = "~"
"path.extensionId" = "~"

[phases.stateful]
max-steps = 5

[[operations]]
include-name = "POST /restapi/v1.0/account/{{accountId}}/extension/{{extensionId}}/fax"
checks.negative_data_rejection.enabled = false
# schemathesis writes an empty array of parts as a multipart body with one empty,
# header-less part, which multipart parsers (rightly) refuse
checks.positive_data_acceptance.enabled = false

# Rules OpenAPI cannot state for query parameters: conversationId and type together
# are MSG-390; a syncToken must be one this server issued (else MSG-333).
[[operations]]
include-name = "DELETE /restapi/v1.0/account/{{accountId}}/extension/{{extensionId}}/message-store"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-name = "GET /restapi/v1.0/account/{{accountId}}/extension/{{extensionId}}/message-sync"
checks.positive_data_acceptance.enabled = false

[warnings]
fail-on = ["missing_auth"]
"""


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    api_port = free_port()
    config = tmp_path / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\nrate_limits = false\n'
        f'[fax.spool]\noutbox = "{tmp_path / "out"}"\nresults = "{tmp_path / "res"}"\n'
        f'[log]\nformat = "json"\nlevel = "warning"\nfile = "{tmp_path / "gatewayd.log"}"\n'
        '[[users]]\nemail = "alice@example.com"\naccount_id = 1\nextension_id = 101\n'
        'extension_number = "101"\nname = "Alice"\nsms_numbers = ["+4930123456"]\n'
        f'api_token_hash = "{hash_token(TOKEN)}"\n'
        "api_admin = true\n"  # the operators' routes (/gatewayd/v1) too
    )
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(CONFIG.format(token=TOKEN, examples=os.environ.get("ST_EXAMPLES", "25")))
    daemon = start(config)
    try:
        deadline = time.monotonic() + 30
        while True:  # logs are at warning (nobody reads the pipe): wait for the port
            try:
                socket.create_connection(("127.0.0.1", api_port), timeout=1).close()
                break
            except OSError:
                assert daemon.poll() is None, daemon.communicate()[1]
                assert time.monotonic() < deadline, "the API did not come up"
                time.sleep(0.1)
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(settings), "run",
             f"http://127.0.0.1:{api_port}/openapi.json", "--generation-deterministic"],
            check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "No issues found" in run.stdout or "passed" in run.stdout, report
    assert "api.internal_error" not in (tmp_path / "gatewayd.log").read_text(), report
    assert daemon.returncode == 0, err
    assert ROOT.exists()
