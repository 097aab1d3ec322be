"""Cancels a running statement through the pgha proxy the way real drivers do, with psycopg 3.

Driven by tests/cancel.rs. argv[1] is a JSON object:
  {"cases": [{"name": str,            # for the report
              "dsn": str,             # through the proxy (sslmode etc. included)
              "monitor": str,         # straight to the backend that serves `dsn`; "{port}"
                                      # in it: the port that session's server listens on
              "api": "safe" | "legacy" | "async" | "copy",
              "wrong_key_first": bool}]}
For each case: connect, start `SELECT pg_sleep(30)`, wait until the backend runs it, optionally
send CancelRequests with this session's pid and a wrong secret (plain, and after an SSLRequest as
libpq 17+ does) and check that the statement still runs a second later, then cancel with the
chosen API and time how long the statement takes to end ("copy": read a few rows of a 20M-row
`COPY ... TO STDOUT` and leave the block by an exception, which makes psycopg cancel it with
`cancel_safe()`; time until the block is left). Prints one JSON object per case on
stdout; tests/cancel.rs judges them. Never raises for a case's outcome: it reports it.
"""

import asyncio
import json
import os
import socket
import struct
import sys
import threading
import time

import psycopg
from psycopg import pq

SLEEP = "SELECT pg_sleep(30)"
CANCEL_REQUEST = 80877102
SSL_REQUEST = 80877103


def wait_active(monitor, pid, timeout=10.0):
    """Until the backend `pid` runs the statement (a cancel before that would be a no-op)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = monitor.execute(
            "SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if row and row[0] == "active" and "pg_sleep" in row[1]:
            return True
        time.sleep(0.02)
    return False


def still_running(monitor, pid):
    row = monitor.execute(
        "SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return bool(row and row[0] == "active" and "pg_sleep" in row[1])


def hostport(dsn):
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return info.get("hostaddr") or info["host"], int(info["port"])


def send_wrong_key(dsn, pid, secret_len):
    """CancelRequests carrying the right pid and a wrong secret: plain, then after SSLRequest."""
    host, port = hostport(dsn)
    secret = os.urandom(secret_len)
    pkt = struct.pack("!III", 12 + secret_len, CANCEL_REQUEST, pid) + secret
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(pkt)
        s.recv(1)  # the proxy closes the connection once the request is handled
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack("!II", 8, SSL_REQUEST))
        answer = s.recv(1)
        if answer == b"N":
            s.sendall(pkt)
            s.recv(1)


def open_monitor(case, port):
    """The monitor connection of `case`, for the server listening on `port`."""
    dsn = case["monitor"].replace("{port}", str(port))
    return psycopg.connect(dsn, autocommit=True)


class LeaveEarly(Exception):
    pass


def run_copy(case):
    out = {}
    conn = psycopg.connect(case["dsn"], autocommit=True)
    out["pid"] = conn.info.backend_pid
    out["protocol"] = conn.pgconn.full_protocol_version
    out["ssl"] = bool(conn.pgconn.ssl_in_use)
    out["port"] = conn.execute("SELECT inet_server_port()").fetchone()[0]
    copy_sql = (
        "COPY (SELECT g, repeat('x', 100) FROM generate_series(1, 20000000) g) TO STDOUT"
    )
    asked = None
    try:
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for i, _ in enumerate(copy.rows()):
                if i == 1000:
                    out["started"] = True
                    asked = time.monotonic()
                    print("  copy: leaving the block (psycopg cancels)", file=sys.stderr, flush=True)
                    raise LeaveEarly()
    except LeaveEarly:
        out["sqlstate"] = "57014"
    except psycopg.Error as ex:
        out["sqlstate"] = ex.sqlstate
    out["seconds"] = round(time.monotonic() - (asked or time.monotonic()), 3)
    # The connection is usable again.
    out["after"] = conn.execute("SELECT 1").fetchone()[0]
    conn.close()
    return out


def run_sync(case):
    out = {}
    conn = psycopg.connect(case["dsn"], autocommit=True)
    out["port"] = conn.execute("SELECT inet_server_port()").fetchone()[0]
    monitor = open_monitor(case, out["port"])
    out["pid"] = pid = conn.info.backend_pid
    out["protocol"] = conn.pgconn.full_protocol_version
    out["ssl"] = bool(conn.pgconn.ssl_in_use)
    result = {}

    def sleeper():
        try:
            conn.execute(SLEEP)
            result["sqlstate"] = None
        except psycopg.Error as ex:
            result["sqlstate"] = ex.sqlstate
        result["ended"] = time.monotonic()

    t = threading.Thread(target=sleeper, daemon=True)
    t.start()
    out["started"] = wait_active(monitor, pid)
    if case.get("wrong_key_first"):
        send_wrong_key(case["dsn"], pid, 32 if out["protocol"] >= 30002 else 4)
        time.sleep(1.0)
        out["after_wrong_key_running"] = t.is_alive() and still_running(monitor, pid)
    asked = time.monotonic()
    print(f"  started={out['started']}: cancelling", file=sys.stderr, flush=True)
    if case["api"] == "safe":
        conn.cancel_safe(timeout=5)
    else:
        conn.cancel()
    t.join(5)
    out["sqlstate"] = result.get("sqlstate", "still running")
    out["seconds"] = round(result.get("ended", time.monotonic()) - asked, 3)
    if t.is_alive():
        # The cancel was lost: end the statement from the side, and let the thread finish
        # before closing (closing under it would hand its socket to the next connection).
        monitor.execute("SELECT pg_cancel_backend(%s)", (pid,))
        t.join(10)
    conn.close()
    monitor.close()
    return out


async def run_async(case):
    out = {}
    aconn = await psycopg.AsyncConnection.connect(case["dsn"], autocommit=True)
    cur = await aconn.execute("SELECT inet_server_port()")
    out["port"] = (await cur.fetchone())[0]
    monitor = open_monitor(case, out["port"])
    out["pid"] = pid = aconn.info.backend_pid
    out["protocol"] = aconn.pgconn.full_protocol_version
    out["ssl"] = bool(aconn.pgconn.ssl_in_use)
    task = asyncio.create_task(aconn.execute(SLEEP))
    out["started"] = await asyncio.to_thread(wait_active, monitor, pid)
    asked = time.monotonic()
    task.cancel()  # psycopg sends the cancel (cancel_safe) and waits for the statement to end
    try:
        await task
        out["sqlstate"] = None
    except asyncio.CancelledError:
        # psycopg closes the connection when the server did not stop the statement in 5 s.
        out["sqlstate"] = "57014" if not aconn.closed else "connection closed"
    except psycopg.Error as ex:
        out["sqlstate"] = ex.sqlstate
    out["seconds"] = round(time.monotonic() - asked, 3)
    if not aconn.closed:
        await aconn.close()
    monitor.close()
    return out


def main():
    config = json.loads(sys.argv[1])
    print(json.dumps({"libpq": pq.version(), "psycopg": psycopg.__version__}), flush=True)
    t0 = time.monotonic()
    for case in config["cases"]:
        # Progress on stderr: a run over its limit says which case it was in.
        print(f"{time.monotonic() - t0:7.2f}s {case['name']}: start", file=sys.stderr, flush=True)
        report = {"name": case["name"]}
        try:
            if case["api"] == "async":
                report.update(asyncio.run(run_async(case)))
            elif case["api"] == "copy":
                report.update(run_copy(case))
            else:
                report.update(run_sync(case))
        except Exception as ex:  # reported, judged by the Rust side
            report["error"] = f"{type(ex).__name__}: {ex}"
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
