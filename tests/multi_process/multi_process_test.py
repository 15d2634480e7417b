#!/usr/bin/env python3
"""Three payments-server processes on one PostgreSQL database, with
payments-psp as the provider they share (issue 15, item 5):

  1. an invoice created on one is read on the two others;
  2. 60 concurrent requests with one Idempotency-Key, spread over the three,
     make one payment;
  3. N create+pay flows spread over the three all end PAID, each with exactly
     one successful payment, and the provider booked exactly N charges;
  4. one server killed with -9 while its payments are at the provider: the two
     others take its invoices over once its lease lapses and settle them, with
     no new charge (the same key at the provider); the takeover time is printed;
  5. SIGTERM: the two survivors exit 0.

    multi_process_test.py SERVER PSP [--flows N]

The database: a fresh one on the server PAYMENTS_TEST_POSTGRES names (set by
scripts/postgres run). Missing: the test fails under CI=true, and is skipped
(exit 77) elsewhere.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

LEASE_MS = 600
JANITOR_MS = 200
GATEWAY_TIMEOUT_MS = 2000


def fail(message):
    print("multi_process_test: FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body) if body is not None else None
        h = {"Content-Type": "application/json"} if data else {}
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        res = conn.getresponse()
        text = res.read()
        return res.status, (json.loads(text) if text and res.getheader("Content-Type", "").find("json") >= 0 else text)
    finally:
        conn.close()


def wait_until(what, predicate, timeout):
    # Real processes on real sockets: there is no clock to inject, so the
    # condition is polled (every 20 ms) up to a deadline, never slept on blindly.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    fail("timed out waiting for " + what)


def fresh_database(uri):
    name = "mp_%d_%d" % (os.getpid(), int(time.time() * 1000) % 100000)
    subprocess.run(["psql", uri, "-q", "-c", "CREATE DATABASE " + name], check=True, stdout=subprocess.DEVNULL)
    parts = urllib.parse.urlsplit(uri)
    return name, urllib.parse.urlunsplit(parts._replace(path="/" + name))


class Server:
    def __init__(self, binary, store, gateway, log):
        self.port = free_port()
        args = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--threads", "2", "--store", store,
                "--gateway", gateway, "--gateway-key", "sk_test_multi", "--log-level", "warn", "--janitor-interval-ms", str(JANITOR_MS),
                "--gateway-timeout-ms", str(GATEWAY_TIMEOUT_MS), "--pg-lease-ms", str(LEASE_MS),
                "--pg-statement-timeout-ms", str(LEASE_MS),
                "--drain-timeout-ms", "3000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)

    def ready(self):
        if self.proc.poll() is not None:
            fail("a server exited at start with %d" % self.proc.returncode)
        try:
            return request(self.port, "GET", "/health/ready", timeout=1)[0] == 200
        except OSError:
            return False


def create_and_pay(port, method="pm_card_ok", key=None):
    status, invoice = request(port, "POST", "/invoices", {"amount": 1000, "currency": "USD"})
    if status != 201:
        fail("create answered %d: %s" % (status, invoice))
    headers = {"Idempotency-Key": key or ("k-" + invoice["id"])}
    status, payment = request(port, "POST", "/invoices/%s/pay" % invoice["id"], {"payment_method": method}, headers)
    if status not in (200, 201, 202):
        fail("pay answered %d: %s" % (status, payment))
    return invoice["id"]


def settled_once(port, invoice_id):
    status, invoice = request(port, "GET", "/invoices/" + invoice_id)
    if status != 200 or invoice["status"] != "PAID":
        return False
    status, payments = request(port, "GET", "/invoices/%s/payments" % invoice_id)
    items = payments["data"] if isinstance(payments, dict) else payments
    succeeded = [p for p in items if p["status"] == "SUCCEEDED"]
    if len(succeeded) != 1:
        fail("invoice %s is PAID with %d successful payments" % (invoice_id, len(succeeded)))
    return True


def all_settled(ports, ids, timeout):
    """Waits until every invoice is PAID once; each is asked again only until it is."""
    remaining = list(enumerate(ids))

    def check():
        remaining[:] = [(i, x) for i, x in remaining if not settled_once(ports[i % len(ports)], x)]
        return not remaining

    wait_until("%d invoices settled" % len(ids), check, timeout)


def psp_charges(port):
    status, text = request(port, "GET", "/metrics")
    found = re.search(rb"^psp_charges_total(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("server")
    parser.add_argument("psp")
    parser.add_argument("--flows", type=int, default=int(os.environ.get("PAYMENTS_MP_FLOWS", "600")))
    args = parser.parse_args()

    uri = os.environ.get("PAYMENTS_TEST_POSTGRES")
    if not uri:
        if os.environ.get("CI") == "true":
            fail("PAYMENTS_TEST_POSTGRES is not set: run under scripts/postgres run -- ...")
        print("multi_process_test: PAYMENTS_TEST_POSTGRES is not set: skipped")
        return 77
    name, store = fresh_database(uri)
    work = tempfile.mkdtemp(prefix="payments-mp-")
    log = open(os.path.join(work, "servers.log"), "w+")
    psp = subprocess.Popen([args.psp, "--port", "0", "--ledger", os.path.join(work, "ledger.db"),
                            "--late-answer-delay-ms", "1000", "--threads", "2"], stdout=subprocess.PIPE, stderr=log, text=True)
    servers = []
    passed = False
    try:
        psp_port = int(psp.stdout.readline().split()[-1])
        gateway = "http://127.0.0.1:%d" % psp_port
        servers = [Server(args.server, store, gateway, log) for _ in range(3)]
        wait_until("three servers ready", lambda: all(s.ready() for s in servers), 30)
        ports = [s.port for s in servers]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=24)

        # 1. Created on one, read on the others.
        status, invoice = request(ports[0], "POST", "/invoices", {"amount": 500, "currency": "USD"})
        for port in ports[1:]:
            status, read = request(port, "GET", "/invoices/" + invoice["id"])
            if status != 200 or read != invoice:
                fail("the invoice created on one server reads %d %s on another" % (status, read))

        # 2. One key, 60 concurrent requests over three servers: one payment.
        path = "/invoices/%s/pay" % invoice["id"]
        answers = list(pool.map(lambda i: request(ports[i % 3], "POST", path, {"payment_method": "pm_card_ok"},
                                                  {"Idempotency-Key": "same-key"}), range(60)))
        made = {body["id"] for status, body in answers if status in (200, 201, 202)}
        other = [(status, body) for status, body in answers if status not in (200, 201, 202, 409)]
        if len(made) != 1 or other:
            fail("60 same-key requests made payments %s; other answers %s" % (made, other[:3]))
        wait_until("the same-key invoice settled", lambda: settled_once(ports[1], invoice["id"]), 20)
        status, payments = request(ports[2], "GET", "/invoices/%s/payments" % invoice["id"])
        if len(payments["data"] if isinstance(payments, dict) else payments) != 1:
            fail("the same-key invoice has %s" % payments)

        # 3. N flows spread over the three: each PAID once, N charges booked.
        before = psp_charges(psp_port)
        started = time.monotonic()
        ids = list(pool.map(lambda i: create_and_pay(ports[i % 3]), range(args.flows)))
        all_settled(ports[1:] + ports[:1], ids, 120)
        elapsed = time.monotonic() - started
        charges = psp_charges(psp_port) - before
        if charges != args.flows:
            fail("%d flows booked %d charges at the provider" % (args.flows, charges))
        print("multi_process_test: %d flows over 3 servers in %.2f s (%.0f flows/s)" %
              (args.flows, elapsed, args.flows / elapsed))

        # 4. Killed with payments in flight: the others finish its acknowledged work.
        before = psp_charges(psp_port)
        victim = servers[2]
        in_flight = list(pool.map(lambda i: create_and_pay(victim.port, "pm_card_late_answer"), range(12)))
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        killed = time.monotonic()
        all_settled(ports[:2], in_flight, 60)
        takeover = time.monotonic() - killed
        charges = psp_charges(psp_port) - before
        if charges != len(in_flight):
            fail("%d payments in flight at the kill booked %d charges" % (len(in_flight), charges))
        print("multi_process_test: takeover after kill -9: %.2f s to settle %d payments in flight "
              "(lease %d ms, janitor %d ms, gateway timeout %d ms)" %
              (takeover, len(in_flight), LEASE_MS, JANITOR_MS, GATEWAY_TIMEOUT_MS))

        # 5. SIGTERM: exit 0.
        for s in servers[:2]:
            s.proc.send_signal(signal.SIGTERM)
        for s in servers[:2]:
            code = s.proc.wait(timeout=20)
            if code != 0:
                fail("a server exited %d on SIGTERM" % code)
        print("multi_process_test: passed")
        passed = True
        return 0
    finally:
        for s in servers:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        psp.kill()
        psp.wait()
        log.seek(0)
        tail = log.read()[-3000:]
        if not passed and tail.strip():
            print("--- server logs (tail) ---\n" + tail, file=sys.stderr)
        subprocess.run(["psql", uri, "-q", "-c", "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
