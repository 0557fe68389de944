# SPDX-License-Identifier: GPL-2.0
"""A small QMP client: enough of QEMU's machine protocol to drive a migration.

QMP is line-delimited JSON over a socket. The server greets, the client
enables commands with ``qmp_capabilities``, then every command gets exactly
one reply (``return`` or ``error``); asynchronous ``event`` messages may
arrive in between and are skipped (the harness polls ``query-migrate``).

Every operation has a deadline: a QEMU that stops answering raises
``QMPTimeout`` instead of hanging the caller.
"""

import json
import socket
import time


class QMPError(Exception):
    """QEMU answered a command with an error."""


class QMPTimeout(QMPError):
    """QEMU did not answer in time (or the connection closed)."""


class QMP:
    def __init__(self, path, timeout=30.0):
        self.path = path
        self.timeout = timeout
        self._buf = b""
        self._sock = self._connect(path, timeout)
        greeting = self._read_message(time.monotonic() + timeout)
        if "QMP" not in greeting:
            raise QMPError(f"{path}: not a QMP greeting: {greeting}")
        self.command("qmp_capabilities")

    @staticmethod
    def _connect(path, timeout):
        # QEMU creates the socket shortly after it starts: retry until the deadline.
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                return sock
            except OSError as e:
                sock.close()
                if time.monotonic() >= deadline:
                    raise QMPTimeout(f"{path}: cannot connect: {e}") from e
                time.sleep(0.2)

    def close(self):
        self._sock.close()

    def _read_message(self, deadline):
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPTimeout(f"{self.path}: no reply in time")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout as e:
                raise QMPTimeout(f"{self.path}: no reply in time") from e
            if not chunk:
                raise QMPTimeout(f"{self.path}: connection closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name, timeout=None, **arguments):
        """Runs one command and returns its ``return`` value."""
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if "error" in reply:
                err = reply["error"]
                raise QMPError(f"{name}: {err.get('class')}: {err.get('desc')}")
            elif "return" in reply:
                return reply["return"]
