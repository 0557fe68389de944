#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Talk to a guest serial line: a QEMU unix-socket chardev (or a FIFO) and its log file.

  serial.py send PATH LINE...                  send each LINE with a newline
  serial.py size LOG                           print the log's size (an --offset for wait)
  serial.py wait LOG REGEX [--offset N] [--timeout S] [--pid PID]
                                               print the first complete line after byte N
                                               that REGEX matches; exit 1 on timeout
  serial.py cmd PATH LOG LINE REGEX [--timeout S] [--pid PID]
                                               send LINE, then wait for REGEX in what
                                               the log gains from then on

Lines are matched without their CR/LF, terminal escape sequences (the firmware clears the
screen) and other control characters; only complete lines match, so a line still being
written never does. --pid gives up early once that process (QEMU) has exited. Importable:
send_line(), log_size(), wait_for().
"""

import argparse
import errno
import fcntl
import os
import re
import socket
import stat
import struct
import sys
import termios
import time

# Bytes sent but not yet read by the peer, for a unix stream socket.
SIOCOUTQ = termios.TIOCOUTQ

# CSI sequences, two-character escapes, then any control character left but a tab.
NOISE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_c]|[\x00-\x08\x0a-\x1f\x7f]")


class Timeout(Exception):
    pass


class ProcessGone(Exception):
    pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drain(sock):
    """Discard what the chardev sends us, so guest output never waits on this client."""
    try:
        while sock.recv(65536):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def send_line(path, line, timeout=10.0):
    """Send LINE and a newline to the unix-socket chardev (or FIFO) at PATH.

    A QEMU socket chardev drops what it has not read yet when the client hangs up, so the
    connection stays open until the peer has taken every byte (or TIMEOUT passes).
    """
    data = line.encode() + b"\n"
    if stat.S_ISFIFO(os.stat(path).st_mode):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        while True:
            try:
                sock.connect(path)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                # Another client holds the chardev, or QEMU is still starting.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
        sock.sendall(data)
        sock.setblocking(False)
        while True:
            _drain(sock)
            unread = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0" * 4))[0]
            if unread == 0:
                break
            if time.monotonic() >= deadline:
                raise Timeout(f"{path}: {unread} bytes still unread after {timeout}s")
            time.sleep(0.02)
    finally:
        sock.close()


def log_size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def wait_for(path, regex, timeout, offset=0, pid=None):
    """Wait for a complete line of the log at PATH, past byte OFFSET, that REGEX matches.

    Returns (match, offset just past that line). Raises Timeout, or ProcessGone once PID
    has exited without the line having appeared.
    """
    pattern = re.compile(regex)
    deadline = time.monotonic() + timeout
    pos = offset
    pending = b""
    while True:
        gone = pid is not None and not _alive(pid)
        try:
            with open(path, "rb") as log:
                log.seek(pos)
                chunk = log.read()
        except FileNotFoundError:
            chunk = b""
        pos += len(chunk)
        pending += chunk
        while True:
            nl = pending.find(b"\n")
            if nl < 0:
                break
            raw, pending = pending[: nl + 1], pending[nl + 1 :]
            text = NOISE.sub("", raw.decode(errors="replace"))
            m = pattern.search(text)
            if m:
                return m, pos - len(pending)
        if gone:
            raise ProcessGone(f"process {pid} exited before /{regex}/ appeared in {path}")
        if time.monotonic() >= deadline:
            raise Timeout(f"/{regex}/ did not appear in {path} within {timeout}s")
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="op", required=True)
    p = sub.add_parser("send")
    p.add_argument("path")
    p.add_argument("lines", nargs="+")
    p = sub.add_parser("size")
    p.add_argument("log")
    p = sub.add_parser("wait")
    p.add_argument("log")
    p.add_argument("regex")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--pid", type=int)
    p = sub.add_parser("cmd")
    p.add_argument("path")
    p.add_argument("log")
    p.add_argument("line")
    p.add_argument("regex")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--pid", type=int)
    args = ap.parse_args()

    try:
        if args.op == "send":
            for line in args.lines:
                send_line(args.path, line)
        elif args.op == "size":
            print(log_size(args.log))
        else:
            if args.op == "cmd":
                offset = log_size(args.log)
                send_line(args.path, args.line)
            else:
                offset = args.offset
            m, _ = wait_for(args.log, args.regex, args.timeout, offset, args.pid)
            print(m.string)
    except (Timeout, ProcessGone) as e:
        print(f"serial.py: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno == errno.EPIPE:
            print(f"serial.py: {args.path}: the peer went away", file=sys.stderr)
        else:
            print(f"serial.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
