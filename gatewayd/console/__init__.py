"""The web console: a door for people, served under /console/ on the API's listener
(``[console] enabled``, on by default; docs/console.md).

Server-rendered pages (Jinja2, every value escaped), made livelier by htmx and a
little script of its own where a browser runs scripts; the chart library (uPlot) and
htmx are vendored files, so nothing is fetched from elsewhere. It reads and changes the
mailbox only through ``Mailbox``, admits what it sends through gatewayd/admission as
the API does, and sees the daemon's running parts through the API's ``Context``
(``live``: the SMPP links and the fax carrier; ``renderer``: the render pool for fax
previews). It imports no carrier package.

In order: ``mount`` (app.py) builds the console app and mounts it on the API's app;
sessions.py signs people in and keeps the forms safe; web.py is what every page
shares and who may see what; dashboard.py and live.py the operators' dashboard;
messages.py the mailbox and its actions; send.py the SMS and fax forms; images.py
fax pages as PNG; logs.py a message's log lines.
"""

from gatewayd.console.app import create_console, mount

__all__ = ["create_console", "mount"]
