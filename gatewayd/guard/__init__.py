"""What keeps the daemon standing under hostile load, for every listener and the
process as a whole:

- ``listener``: listening sockets accepted by our own loop, with caps on open
  connections per listener and per client address, refusals written before a
  protocol is built, and descriptor exhaustion handled without a log flood;
- ``tally``: events that can come thousands a second (accept errors, refused
  connections) logged once per interval with a count;
- ``stalls``: a thread that notices when the event loop has not run for a while and
  logs, once per stall, the stack of what was running;
- ``process``: the descriptor limit raised to what the system allows, and files the
  daemon creates private to it (umask 077).

Imports nothing from gatewayd but logging: the doors (SMTP, HTTP) and the daemon use it.
"""
