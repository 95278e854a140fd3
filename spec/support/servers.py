#!/usr/bin/env python3
"""Loopback HTTP servers for the built-in checks' specs and the demo.

  python3 spec/support/servers.py NAME=MODE ...

binds one listener per NAME on 127.0.0.1 (MODE ending in 6: on ::1) on an
ephemeral port, prints one line "pid PID NAME PORT ..." once all listen, and serves
until its stdin closes (the parent exited or closed the pipe) or it is
killed. While it runs, a line "NAME MODE" on stdin switches NAME's mode.
Every loop is bounded: a connection is served for at most LIFETIME
seconds and sends at most CAP bytes.

Modes:
  ok        200 with body "ok"           status    503
  hang      accepts, reads, never replies slowbody  200 header at once, then a body byte every 0.2 s
  slow      200 after 0.3 s               big       200, then up to 100 MB of body
  endless   a header that never ends      garbage   bytes that are not HTTP
  chunked   200 with a chunked body       echo      200 with the request as the body
  close     accepts and closes at once    refused   (no listener: the port is closed)
  badstatus, nospace, http2, barelf, fold, badname, badcl, twocl, badchunk,
  headonly  a reply breaking one rule each (RAW below)
  ok6       'ok' on ::1
"""
import os
import socket
import sys
import threading
import time

CAP = 100 * 1024 * 1024
LIFETIME = 30.0

modes = {}

# replies that break one rule of HTTP/1.1 each (the strict reader's specs)
RAW = {
    "badstatus": b"HTTP/1.1 2OO OK\r\n\r\n",
    "nospace": b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    "http2": b"HTTP/2.0 200 OK\r\n\r\n",
    "barelf": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n",
    "badname": b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
    "badcl": b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nok",
    "twocl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "badchunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    "headonly": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
}


def read_request(conn):
    data = b""
    if conn.gettimeout() is None:
        conn.settimeout(LIFETIME)
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def send_all_bounded(conn, piece, pause=0.0):
    sent, start = 0, time.time()
    while sent < CAP and time.time() - start < LIFETIME:
        conn.sendall(piece)
        sent += len(piece)
        if pause:
            time.sleep(pause)


def reply(conn, status, body, extra=b""):
    conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\nConnection: close\r\n" + extra + b"\r\n" + body)


def serve(conn, name):
    mode = modes[name]
    try:
        if mode == "close":
            return
        req = read_request(conn)
        if mode in ("ok", "ok6"):
            reply(conn, b"200 OK", b"ok")
        elif mode == "status":
            reply(conn, b"503 Service Unavailable", b"down")
        elif mode == "hang":
            conn.settimeout(LIFETIME)
            while conn.recv(4096):
                pass
        elif mode == "slow":
            time.sleep(0.3)
            reply(conn, b"200 OK", b"ok")
        elif mode == "slowbody":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
            for _ in range(10):
                time.sleep(0.2)
                conn.sendall(b"x")
        elif mode == "big":
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            send_all_bounded(conn, b"y" * 65536)
        elif mode == "endless":
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Long: ")
            send_all_bounded(conn, b"a" * 65536)
        elif mode == "garbage":
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02garbage\r\n\r\n")
        elif mode == "chunked":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                         b"2\r\nhe\r\n3;x=1\r\nllo\r\n0\r\n\r\n")
        elif mode == "echo":
            reply(conn, b"200 OK", req)
        elif mode in RAW:
            conn.sendall(RAW[mode])
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


# answered in the accept loop itself: a thread per connection would make
# the server, not the checks, the bottleneck of the 10 000-check spec
QUICK = ("ok", "ok6", "status", "garbage", "chunked", "echo", "close") + tuple(RAW)


def accept_loop(sock, name):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        if modes[name] in QUICK:
            conn.settimeout(2.0)
            serve(conn, name)
        else:
            threading.Thread(target=serve, args=(conn, name), daemon=True).start()


def main():
    out = ["pid %d" % os.getpid()]
    for arg in sys.argv[1:]:
        name, _, mode = arg.partition("=")
        modes[name] = mode
        family, host = (socket.AF_INET6, "::1") if mode.endswith("6") else (socket.AF_INET, "127.0.0.1")
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        port = s.getsockname()[1]
        if mode == "refused":
            s.close()  # the port, free: a connection to it is refused
        else:
            s.listen(1024)
            threading.Thread(target=accept_loop, args=(s, name), daemon=True).start()
        out.append("%s %d" % (name, port))
    print(" ".join(out), flush=True)
    for line in sys.stdin:  # ends when the parent closes the pipe or exits
        parts = line.split()
        if len(parts) == 2 and parts[0] in modes:
            modes[parts[0]] = parts[1]


if __name__ == "__main__":
    main()
