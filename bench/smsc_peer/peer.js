'use strict';
/*
 * The SMSC peer of bench/sms_vs_kannel.py: an SMPP 3.4 server built on node-smpp (npm
 * package `smpp`), so that neither gateway is measured against its own simulator.
 *
 *   node peer.js [--listen 127.0.0.1:0] [--control 127.0.0.1:0] [--receipt-delay 300]
 *
 * What it promises, in the order of a run:
 * - Prints one JSON line on stdout once both ports listen: {"smpp": PORT, "control": PORT}.
 * - Accepts any bind (transceiver, transmitter, receiver) with any credentials; a bind
 *   from a system_id put on hold (POST /hold?system_id=X) is answered only at
 *   POST /release, so that a gateway can start and settle before its clock runs.
 * - Answers every submit_sm at once with ESME_ROK and a new decimal message id, counts
 *   submits per destination (leading "+" dropped) to expose duplicates, and records the
 *   time of each submit.
 * - When registered_delivery asks for one, sends a delivery receipt RECEIPT_DELAY ms
 *   later: deliver_sm with esm_class 0x04, the standard text ("id:... sub:001 dlvrd:001
 *   submit date:... done date:... stat:DELIVRD err:000 text:...") and the
 *   receipted_message_id and message_state (2, DELIVERED) TLVs, on the bound session of
 *   the system_id that submitted. A receipt is done when its deliver_sm_resp says
 *   ESME_ROK; another status sends it again a second later. Receipts that are not
 *   acknowledged when their session closes (or that fall due while no session of that
 *   system_id is bound) wait and go out as soon as that system_id binds again, as a
 *   store-and-forward SMSC does.
 * - GET /stats answers the counts, the time of the first and last submit and of the last
 *   acknowledged receipt (epoch seconds), the submit_sm rate between the 10th and the
 *   90th percentile of submits, and this process's CPU seconds. GET /duplicates lists
 *   the destinations submitted more than once. POST /reset forgets everything of the
 *   previous run (message ids keep counting up).
 * Every address is the one given (the bench passes loopback only).
 */

const http = require('http');
const { performance } = require('perf_hooks');
const smpp = require('smpp');

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

function hostPort(text) {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at), port: Number(text.slice(at + 1)) };
}

const listen = hostPort(option('--listen', '127.0.0.1:0'));
const control = hostPort(option('--control', '127.0.0.1:0'));
const receiptDelay = Number(option('--receipt-delay', '300'));
const RESEND_AFTER = 1000;
const DELIVERED = 2;

function now() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

function smppDate(date) {
  const two = (n) => String(n).padStart(2, '0');
  return (
    two(date.getUTCFullYear() % 100) + two(date.getUTCMonth() + 1) + two(date.getUTCDate()) +
    two(date.getUTCHours()) + two(date.getUTCMinutes())
  );
}

let nextId = 1000000;
let run = newRun();
const bound = new Map(); // system_id -> the session receipts go to
const held = new Set(); // system_ids whose binds wait for /release
const waitingBinds = []; // [session, pdu] held binds

function newRun() {
  return {
    submits: 0,
    perDestination: new Map(),
    submitTimes: [],
    receiptsSent: 0,
    receiptsAcked: 0,
    receiptsRefused: 0,
    lastAck: null,
    pending: new Map(), // system_id -> receipts waiting for a bind
    binds: [],
    errors: [],
  };
}

function receiptFor(pdu, messageId, systemId) {
  const submitted = new Date();
  let text = '';
  const message = pdu.short_message && pdu.short_message.message;
  if (typeof message === 'string') {
    text = message.slice(0, 20).replace(/[^\x20-\x7e]/g, '?');
  }
  return {
    systemId,
    run,
    messageId,
    source: pdu.source_addr,
    sourceTon: pdu.source_addr_ton,
    sourceNpi: pdu.source_addr_npi,
    destination: pdu.destination_addr,
    destinationTon: pdu.dest_addr_ton,
    destinationNpi: pdu.dest_addr_npi,
    submitted,
    text,
  };
}

function sendReceipt(receipt) {
  if (receipt.run !== run) {
    return; // a receipt of a run that was reset
  }
  const session = bound.get(receipt.systemId);
  if (!session) {
    queueReceipt(receipt);
    return;
  }
  const date = smppDate(receipt.submitted);
  const body =
    `id:${receipt.messageId} sub:001 dlvrd:001 submit date:${date} ` +
    `done date:${smppDate(new Date())} stat:DELIVRD err:000 text:${receipt.text}`;
  const pdu = new smpp.PDU('deliver_sm', {
    source_addr_ton: receipt.destinationTon,
    source_addr_npi: receipt.destinationNpi,
    source_addr: receipt.destination,
    dest_addr_ton: receipt.sourceTon,
    dest_addr_npi: receipt.sourceNpi,
    destination_addr: receipt.source,
    esm_class: 0x04,
    data_coding: 0,
    short_message: Buffer.from(body, 'ascii'),
    receipted_message_id: receipt.messageId,
    message_state: DELIVERED,
  });
  const sent = session.send(pdu, (resp) => {
    session.outstanding.delete(pdu.sequence_number);
    if (receipt.run !== run) {
      return;
    }
    if (resp.command_status === 0) {
      run.receiptsAcked += 1;
      run.lastAck = now();
    } else {
      run.receiptsRefused += 1;
      setTimeout(() => sendReceipt(receipt), RESEND_AFTER);
    }
  });
  if (!sent) {
    queueReceipt(receipt);
    return;
  }
  session.outstanding.set(pdu.sequence_number, receipt);
  run.receiptsSent += 1;
}

function queueReceipt(receipt) {
  if (!run.pending.has(receipt.systemId)) {
    run.pending.set(receipt.systemId, []);
  }
  run.pending.get(receipt.systemId).push(receipt);
}

function answerBind(session, pdu) {
  session.systemId = pdu.system_id;
  session.send(pdu.response({ system_id: 'nodepeer' }));
  if (pdu.command !== 'bind_transmitter') {
    bound.set(pdu.system_id, session);
  }
  run.binds.push({ system_id: pdu.system_id, command: pdu.command, at: now() });
  const waiting = run.pending.get(pdu.system_id) || [];
  run.pending.delete(pdu.system_id);
  for (const receipt of waiting) {
    sendReceipt(receipt);
  }
}

function onSession(session) {
  session.outstanding = new Map(); // sequence_number -> receipt sent, not yet answered
  session.systemId = null;
  const bind = (pdu) => {
    if (held.has(pdu.system_id)) {
      waitingBinds.push([session, pdu]);
    } else {
      answerBind(session, pdu);
    }
  };
  session.on('bind_transceiver', bind);
  session.on('bind_transmitter', bind);
  session.on('bind_receiver', bind);
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    if (session.systemId === null) {
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    const messageId = String(nextId++);
    session.send(pdu.response({ message_id: messageId }));
    run.submits += 1;
    run.submitTimes.push(now());
    const destination = String(pdu.destination_addr).replace(/^\+/, '');
    run.perDestination.set(destination, (run.perDestination.get(destination) || 0) + 1);
    if (pdu.registered_delivery & 0x03) {
      const receipt = receiptFor(pdu, messageId, session.systemId);
      setTimeout(() => sendReceipt(receipt), receiptDelay);
    }
  });
  session.on('error', (error) => {
    run.errors.push(String(error && error.message ? error.message : error));
  });
  session.on('close', () => {
    if (session.systemId !== null && bound.get(session.systemId) === session) {
      bound.delete(session.systemId);
    }
    for (const receipt of session.outstanding.values()) {
      if (receipt.run === run) {
        run.receiptsSent -= 1;
        queueReceipt(receipt);
      }
    }
    session.outstanding.clear();
  });
}

function stats() {
  const times = run.submitTimes;
  let sustained = null;
  if (times.length >= 10) {
    const low = Math.floor(times.length * 0.1);
    const high = Math.floor(times.length * 0.9);
    if (times[high] > times[low]) {
      sustained = (high - low) / (times[high] - times[low]);
    }
  }
  let duplicated = 0;
  let duplicateSubmits = 0;
  for (const count of run.perDestination.values()) {
    if (count > 1) {
      duplicated += 1;
      duplicateSubmits += count - 1;
    }
  }
  let pending = 0;
  for (const list of run.pending.values()) {
    pending += list.length;
  }
  const usage = process.cpuUsage();
  return {
    submits: run.submits,
    destinations: run.perDestination.size,
    duplicated_destinations: duplicated,
    duplicate_submits: duplicateSubmits,
    receipts_sent: run.receiptsSent,
    receipts_acked: run.receiptsAcked,
    receipts_refused: run.receiptsRefused,
    receipts_waiting_for_bind: pending,
    first_submit: times.length ? times[0] : null,
    last_submit: times.length ? times[times.length - 1] : null,
    last_ack: run.lastAck,
    submit_sm_per_s_10_90: sustained,
    bound: Array.from(bound.keys()),
    binds: run.binds,
    errors: run.errors.slice(0, 10),
    cpu_s: (usage.user + usage.system) / 1e6,
  };
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const controlServer = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://peer');
  if (req.method === 'GET' && url.pathname === '/stats') {
    reply(res, 200, stats());
  } else if (req.method === 'GET' && url.pathname === '/duplicates') {
    const out = {};
    for (const [destination, count] of run.perDestination) {
      if (count > 1) {
        out[destination] = count;
      }
    }
    reply(res, 200, out);
  } else if (req.method === 'POST' && url.pathname === '/reset') {
    run = newRun();
    reply(res, 200, { reset: true });
  } else if (req.method === 'POST' && url.pathname === '/hold') {
    held.add(url.searchParams.get('system_id'));
    reply(res, 200, { held: Array.from(held) });
  } else if (req.method === 'GET' && url.pathname === '/held') {
    reply(res, 200, { waiting: waitingBinds.map(([, pdu]) => pdu.system_id) });
  } else if (req.method === 'POST' && url.pathname === '/release') {
    held.clear();
    const waiting = waitingBinds.splice(0);
    for (const [session, pdu] of waiting) {
      if (!session.socket.destroyed) {
        answerBind(session, pdu);
      }
    }
    reply(res, 200, { released: waiting.length });
  } else {
    reply(res, 404, { error: `no ${req.method} ${url.pathname}` });
  }
});

const server = smpp.createServer(onSession);
server.listen(listen.port, listen.host, () => {
  controlServer.listen(control.port, control.host, () => {
    process.stdout.write(
      JSON.stringify({ smpp: server.address().port, control: controlServer.address().port }) + '\n',
    );
  });
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    process.stdout.write(JSON.stringify({ stopped: true, ...stats() }) + '\n');
    process.exit(0);
  });
}
