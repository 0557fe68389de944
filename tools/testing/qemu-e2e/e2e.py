#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""QEMU live-migrates a nested guest that owns a passthrough virtio-blk function.

Runs in the test VM (L1), booted by tools/testing/qemu-e2e/run-e2e.sh with an
emulated intel-iommu and three device-model functions:

  A  devsim0  the source device
  B  devsim1  the destination device, serving the same disk image as A
  C  devsim2  a destination whose identity differs (another queue count)

Each has an owner function (function 0 of its slot, bound to virtio_mig_owner)
whose admin write recording tracks the function's DMA, so QEMU uses device
dirty tracking and migrates at its default downtime limit; with --no-owners
(run-e2e.sh) QEMU must treat all RAM as dirty, the baseline.

All three are bound to virtio_vfio_mig. A source QEMU runs L2 (our bzImage and
an initramfs whose init runs blkcheck on /dev/vda, the function passed
through); destination QEMUs wait with -incoming. blkcheck writes blocks that
carry (sequence, block, checksum) and re-reads them all the time; its console
is a socket chardev, so this script can pause it, make it verify every block
and read the disk statistics of L2's block layer.

Suites (TAP, framed for tools/testing/vm/summarize.py):

  refuse   migrating to C fails (the destination driver refuses the stream's
           identity during pre-copy) and L2 keeps running on A
  cancel   migrate_cancel mid-way leaves L2 running on A, I/O going on
  migrate  migration to B completes; L2 runs on B; every block written on A
           and on B verifies on B; the device models executed each request
           L2's block layer completed exactly once

Every wait is bounded: a hung QEMU or guest fails the suite, never the run.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP, QMPError  # noqa: E402
from serial import NOISE, Timeout, log_size, send_line, wait_for  # noqa: E402

CACHE_DIR = os.environ.get("VVM_CACHE", "/var/cache/virtio-vfio-mig")
KOUT = os.path.join(CACHE_DIR, "build/kout")
BZIMAGE = os.path.join(KOUT, "arch/x86/boot/bzImage")
INITRAMFS = os.path.join(KOUT, "e2e/l2-initramfs.cpio")
STATS_DIR = os.path.join(CACHE_DIR, "build/devsim-stats")
RESULTS_DIR = os.path.join(CACHE_DIR, "build/results")
RUN_DIR = "/run/qemu-e2e"
# The guest scripts' helpers: which functions are the device model's, and binding them.
# L2 is the workload, not the kernel under test: its KUnit suites are off there (under nested
# TCG they cost minutes of boot).
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "l2/cmdline")) as f:
    L2_CMDLINE = f.read().strip()
GUEST_LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../vm/guest/lib.sh")
DRIVER = "virtio_vfio_mig"
QEMU = "qemu-system-x86_64"
# blkcheck's region: 4 MiB, so a full verify stays short under nested TCG.
BLKCHECK_BLOCKS = 1024
# Bytes/s for the migration the cancel suite interrupts.
CANCEL_BANDWIDTH = 1 << 20
# QEMU's default downtime-limit, ms.
DEFAULT_DOWNTIME_LIMIT_MS = 300

STATUS = re.compile(r"blkcheck: t=\S+ (.*)")
FIELDS = re.compile(r"(\w+)=(-?\d+)")


# ---------------------------------------------------------------------------
# The L1 side: device-model functions and the driver.
# ---------------------------------------------------------------------------

def guest_lib(call):
    """Runs a function of the guest scripts' lib.sh."""
    return subprocess.run(["bash", "-c", f'source "$0" && {call}', GUEST_LIB],
                          capture_output=True, text=True)


def devsim_functions():
    """The device-model functions in PCI address order: function i is devsim<i>."""
    return guest_lib("devsim_devices").stdout.split()


def bind(bdf):
    if guest_lib(f"bind_driver {bdf}").returncode != 0:
        raise RuntimeError(f"{bdf}: {DRIVER} did not bind")


def owner_functions():
    """The owner functions (run-vm.sh --owners): function 0 of each device model's slot."""
    return guest_lib("devsim_owners").stdout.split()


def bind_owner(bdf):
    if guest_lib(f"bind_owner {bdf}").returncode != 0:
        raise RuntimeError(f"{bdf}: the owner driver did not bind")


# QEMU's warning when it must treat all guest RAM as dirty at every sync.
NO_DIRTY_TRACKING = re.compile(r"doesn't support .*dirty tracking")


def dmesg_lines(pattern):
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if re.search(pattern, l)]


def devsim_stats(index):
    """The counters of device model devsim<index> (refreshed twice a second)."""
    stats = {}
    with open(os.path.join(STATS_DIR, f"devsim{index}.stats")) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if value.isdigit():
                stats[key] = int(value)
    return stats


# ---------------------------------------------------------------------------
# QEMU processes and L2's console.
# ---------------------------------------------------------------------------

class Console:
    """L2's serial line: a socket chardev for commands, a log file for output."""

    def __init__(self, sock, logfile):
        self.sock, self.logfile = sock, logfile

    def text(self):
        """The console output so far, without carriage returns and terminal escapes."""
        try:
            with open(self.logfile, errors="replace") as f:
                raw = f.read()
        except FileNotFoundError:
            return ""
        return "\n".join(NOISE.sub("", line) for line in raw.split("\n"))

    def send(self, line):
        send_line(self.sock, line, timeout=30)

    def wait_for(self, pattern, timeout, offset=0):
        """The first line past byte offset that matches pattern, or None after timeout s."""
        try:
            return wait_for(self.logfile, pattern, timeout, offset)[0]
        except Timeout:
            return None

    def command(self, line, answer, timeout):
        """Sends a blkcheck command and returns the fields of its answer line."""
        offset = log_size(self.logfile)
        self.send(line)
        m = self.wait_for(answer, timeout, offset)
        return dict((k, int(v)) for k, v in FIELDS.findall(m.string)) if m else None

    def last_status(self):
        lines = STATUS.findall(self.text())
        return dict((k, int(v)) for k, v in FIELDS.findall(lines[-1])) if lines else None

    def errors(self):
        return re.findall(r"blkcheck: ERROR[^\n]*", self.text())


class Qemu:
    """One QEMU of L2: the source, or a destination waiting with -incoming."""

    def __init__(self, name, args, memory_mib):
        base = os.path.join(RUN_DIR, name)
        self.qmp_path = base + ".qmp"
        self.console = Console(base + ".serial", base + ".console")
        self.stderr_path = base + ".stderr"
        for path in (self.qmp_path, self.console.sock, self.console.logfile):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        cmd = [QEMU, "-accel", "tcg", "-M", "q35", "-m", f"{memory_mib}M", "-smp", "1",
               "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
               "-kernel", BZIMAGE, "-initrd", INITRAMFS,
               "-append", f"{L2_CMDLINE} blkcheck_args=--blocks={BLKCHECK_BLOCKS}",
               "-chardev", f"socket,id=con,path={self.console.sock},server=on,wait=off,"
               f"logfile={self.console.logfile}",
               "-serial", "chardev:con",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off"] + args
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=subprocess.STDOUT)
        self.qmp = QMP(self.qmp_path, timeout=60)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            with contextlib.suppress(QMPError, OSError):
                self.qmp.command("quit", timeout=10)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.qmp.close()
        self.stderr.close()

    def stderr_text(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def running(self):
        try:
            return self.qmp.command("query-status", timeout=20).get("status") == "running"
        except (QMPError, OSError):
            return False


def vfio_device_args(bdf):
    # No BAR mmap: L0 cannot map a vfio-user function's MMIO into its IOMMU for P2P.
    return ["-device", f"vfio-pci,host={bdf},id=disk0,addr=0x4,enable-migration=on,"
            "x-no-mmap=on,rombar=0"]


def emulated_disk_args(path):
    return ["-drive", f"file={path},if=none,id=d0,format=raw,cache=none",
            "-device", "virtio-blk-pci,drive=d0,id=disk0,addr=0x4"]


# ---------------------------------------------------------------------------
# TAP suites.
# ---------------------------------------------------------------------------

class Suite:
    """One suite's TAP, on the console and in the results directory."""

    def __init__(self, name):
        self.name, self.n, self.failed = name, 0, 0
        os.makedirs(RESULTS_DIR, exist_ok=True)
        self.file = open(os.path.join(RESULTS_DIR, f"e2e-{name}.tap"), "w")
        self.out(f"@@suite e2e-{name}")
        self.out("TAP version 13")
        # This guest's kernel log so far: what it reports during the suite fails the suite.
        self.dmesg_lines = len(subprocess.run(["dmesg"], capture_output=True,
                                              text=True).stdout.splitlines())

    def out(self, line):
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()

    def check(self, ok, what, detail=None):
        self.n += 1
        self.out(f"{'ok' if ok else 'not ok'} {self.n} - {what}")
        if not ok:
            self.failed += 1
            if detail:
                for line in str(detail).splitlines()[-20:]:
                    self.out(f"# {line}")
        return ok

    def end(self):
        reports = guest_lib(f"kernel_reports {self.dmesg_lines}").stdout.strip()
        self.check(not reports, "the test VM's kernel reported nothing while the suite ran",
                   reports)
        self.out(f"1..{self.n}")
        self.out(f"@@end e2e-{self.name} rc={1 if self.failed else 0}")
        self.file.close()
        return self.failed == 0


# ---------------------------------------------------------------------------
# The scenario.
# ---------------------------------------------------------------------------

class Scenario:
    def __init__(self, opts, functions):
        self.opts = opts
        self.functions = functions
        self.src = None
        self.dst = None
        self.figures = {}

    def start_source(self, device_args):
        self.src = Qemu("src", device_args, self.opts.l2_memory)
        t0 = time.monotonic()
        m = self.src.console.wait_for(r"blkcheck: ready", self.opts.boot_timeout)
        self.figures["l2_boot_s"] = time.monotonic() - t0
        return m is not None

    def start_destination(self, name, device_args):
        uri = f"unix:{os.path.join(RUN_DIR, name + '.mig')}"
        dst = Qemu(name, device_args + ["-incoming", uri], self.opts.l2_memory)
        return dst, uri

    def progressing(self, console, timeout=90):
        """blkcheck keeps writing and verifying on this console, beyond its last status."""
        before = console.last_status() or {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = console.last_status() or {}
            if now.get("writes", 0) > before.get("writes", 0) + 2 and \
                    now.get("verified", 0) > before.get("verified", 0):
                return now
            time.sleep(1)
        return None

    def migrate(self, dst_uri, downtime_limit_ms, observe_s=0):
        """Starts a migration; with observe_s, first watches it at QEMU's default limit."""
        qmp = self.src.qmp
        if observe_s:
            self.observe_default_limit(dst_uri, observe_s)
        else:
            qmp.command("migrate-set-parameters", **{"downtime-limit": downtime_limit_ms})
            qmp.command("migrate", uri=dst_uri)

    def observe_default_limit(self, dst_uri, observe_s):
        """The baseline: how the migration fares at QEMU's default downtime limit."""
        qmp = self.src.qmp
        default = qmp.command("query-migrate-parameters")["downtime-limit"]
        qmp.command("migrate", uri=dst_uri)
        t0 = time.monotonic()
        expected = []
        info = {}
        while time.monotonic() - t0 < observe_s:
            info = qmp.command("query-migrate")
            if info.get("status") not in ("setup", "active", "pre-switchover", "device"):
                break
            if "expected-downtime" in info:
                expected.append(info["expected-downtime"])
            time.sleep(2)
        self.figures["default_limit_ms"] = default
        self.figures["default_limit_expected_downtime_ms"] = expected[-1] if expected else None
        self.figures["default_limit_status"] = info.get("status")
        self.figures["default_limit_elapsed_s"] = time.monotonic() - t0
        self.figures["default_limit_syncs"] = info.get("ram", {}).get("dirty-sync-count")
        if info.get("status") in ("setup", "active"):
            qmp.command("migrate-set-parameters",
                        **{"downtime-limit": self.opts.downtime_limit})

    def wait_migration(self, timeout, want=("completed", "failed", "cancelled")):
        deadline = time.monotonic() + timeout
        info = {}
        while time.monotonic() < deadline:
            try:
                info = self.src.qmp.command("query-migrate", timeout=30)
            except QMPError as e:
                return {"status": f"query-migrate: {e}"}
            if info.get("status") in want:
                return info
            time.sleep(1)
        info["status"] = f"{info.get('status')} after {timeout}s"
        return info

    # -- suites ------------------------------------------------------------

    def refuse(self):
        s = Suite("refuse")
        if len(self.functions) < 3:
            s.check(False, "a third device-model function with another identity exists")
            return s.end()
        c_index = 2
        c_before = devsim_stats(c_index)
        dmesg_before = len(dmesg_lines(DRIVER))
        dst, uri = self.start_destination("dst-c", vfio_device_args(self.functions[c_index]))
        try:
            self.migrate(uri, self.opts.downtime_limit)
            info = self.wait_migration(self.opts.migrate_timeout)
            s.check(info.get("status") == "failed", "migration to a different device fails",
                    json.dumps(info))
            refusal = [l for l in dmesg_lines(DRIVER)[dmesg_before:]
                       if self.functions[c_index] in l and "incompatible device" in l]
            s.check(bool(refusal), "the destination driver says why it refuses the stream",
                    "\n".join(dmesg_lines(DRIVER)[-10:]))
            s.check(self.src.running(), "L2 still runs on the source")
            s.check(self.progressing(self.src.console) is not None,
                    "I/O goes on on the source after the refusal",
                    self.src.console.text()[-1500:])
            c_after = devsim_stats(c_index)
            s.check(c_after.get("requests_served") == c_before.get("requests_served"),
                    "the refusing device executed no request",
                    f"before {c_before.get('requests_served')} after "
                    f"{c_after.get('requests_served')}")
        finally:
            dst.stop()
        return s.end()

    def cancel(self):
        s = Suite("cancel")
        dst, uri = self.start_destination("dst-cancel", vfio_device_args(self.functions[1]))
        qmp = self.src.qmp
        default_bandwidth = qmp.command("query-migrate-parameters")["max-bandwidth"]
        try:
            # Caught mid-way: a pre-copy phase throttled to a crawl, and QEMU's default
            # downtime limit, which a guest with all its RAM dirty never meets.
            qmp.command("migrate-set-parameters", **{"max-bandwidth": CANCEL_BANDWIDTH})
            self.migrate(uri, DEFAULT_DOWNTIME_LIMIT_MS)
            # Cancel once RAM is moving, well before the switchover.
            mid = False
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                info = self.src.qmp.command("query-migrate")
                if info.get("status") == "active" and \
                        info.get("ram", {}).get("transferred", 0) > 2 << 20:
                    mid = True
                    break
                if info.get("status") in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.5)
            s.check(mid, "the migration is under way", json.dumps(info))
            self.src.qmp.command("migrate_cancel")
            info = self.wait_migration(60)
            s.check(info.get("status") == "cancelled", "migrate_cancel cancels it",
                    json.dumps(info))
            s.check(self.src.running(), "L2 runs on the source again")
            s.check(self.progressing(self.src.console) is not None,
                    "I/O goes on on the source after the cancel",
                    self.src.console.text()[-1500:])
        finally:
            qmp.command("migrate-set-parameters", **{"max-bandwidth": default_bandwidth})
            dst.stop()
        s.check(not self.src.console.errors(), "blkcheck saw no error on the source",
                "\n".join(self.src.console.errors()))
        return s.end()

    def quiesced_counts(self, console, devices):
        """L2's completed requests and the device models' executed requests, I/O paused."""
        paused = console.command("pause", r"blkcheck: paused", 60)
        if paused is None:
            return None
        disk = console.command("stats", r"blkcheck: diskstat", 60)
        # The device models refresh their counters twice a second: wait for one refresh.
        time.sleep(1.5)
        served = {i: devsim_stats(i).get("requests_served") for i in devices}
        return disk, served

    def migrate_to_b(self):
        s = Suite("migrate")
        before = self.quiesced_counts(self.src.console, (0, 1))
        s.check(before is not None, "blkcheck pauses on the source for a count",
                self.src.console.text()[-1500:])
        if before is None:
            return s.end()
        self.src.console.send("resume")
        self.dst, uri = self.start_destination("dst-b", vfio_device_args(self.functions[1]))
        # Writes go on during the whole migration: the last status before the switchover
        # says how many.
        t0 = time.monotonic()
        self.figures["downtime_limit_ms"] = self.opts.downtime_limit
        self.migrate(uri, self.opts.downtime_limit, observe_s=self.opts.observe)
        info = self.wait_migration(self.opts.migrate_timeout)
        self.figures["migration"] = info
        self.figures["migration_wall_s"] = time.monotonic() - t0
        s.check(info.get("status") == "completed", "migration to B completes", json.dumps(info))
        s.check(self.dst.running(), "L2 runs on B", self.dst.stderr_text())
        warning = NO_DIRTY_TRACKING.search(self.src.stderr_text())
        self.figures["device_dirty_tracking"] = warning is None
        if self.opts.owners:
            s.check(warning is None, "QEMU tracks the device's writes with its dirty logging",
                    warning.group(0) if warning else "")
        on_a = self.src.console.last_status() or {}
        self.figures["l2_on_a_last"] = on_a
        # Progress on B from B's own first status: writes A completed after its last status
        # line show up in that first line on B.
        first = self.dst.console.wait_for(r"blkcheck: t=", 60)
        progress = first and self.progressing(self.dst.console)
        s.check(bool(progress) and progress.get("writes", 0) > on_a.get("writes", 0),
                "blkcheck continues on B where it left A",
                self.dst.console.text()[-1500:])
        verify = self.dst.console.command("verify", r"blkcheck: verify", 300)
        self.figures["verify"] = verify
        s.check(verify is not None and verify.get("errors") == 0 and
                verify.get("blocks", 0) > 0,
                "every block written on A and on B verifies on B", json.dumps(verify))
        errors = self.src.console.errors() + self.dst.console.errors()
        s.check(not errors, "blkcheck saw no error before, during or after the switchover",
                "\n".join(errors))
        after = self.quiesced_counts(self.dst.console, (0, 1))
        self.figures["l2_after"] = self.dst.console.last_status()
        if after is None or before[0] is None or after[0] is None:
            s.check(False, "L2's and the device models' request counts are readable",
                    self.dst.console.text()[-1500:])
            return s.end()
        (disk0, served0), (disk1, served1) = before, after

        def total(d):
            # The block layer counts a flush also as the empty write that carries it: the
            # requests the device executed are reads + writes (l2/README.md).
            return d["reads"] + d["writes"]

        completed = total(disk1) - total(disk0)
        executed_a = served1[0] - served0[0]
        executed_b = served1[1] - served0[1]
        self.figures["requests"] = {"completed_by_l2": completed, "executed_on_a": executed_a,
                                    "executed_on_b": executed_b}
        s.check(executed_a > 0 and executed_b > 0, "both devices executed requests",
                json.dumps(self.figures["requests"]))
        s.check(executed_a + executed_b == completed,
                "A and B together executed each request L2 completed exactly once",
                json.dumps(self.figures["requests"]))
        self.dst.console.send("resume")
        return s.end()


def baseline_without_passthrough(opts):
    """The same L2 and workload on an emulated disk: what the passthrough device adds."""
    disk = os.path.join(RUN_DIR, "emulated.img")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    sc = Scenario(opts, [])
    figures = {}
    try:
        if not sc.start_source(emulated_disk_args(disk)):
            return {"error": "L2 did not start"}
        sc.progressing(sc.src.console)
        sc.dst, uri = sc.start_destination("dst-emu", emulated_disk_args(disk))
        t0 = time.monotonic()
        sc.migrate(uri, opts.downtime_limit, observe_s=opts.observe)
        figures["migration"] = sc.wait_migration(opts.migrate_timeout)
        figures["migration_wall_s"] = time.monotonic() - t0
        figures.update({k: v for k, v in sc.figures.items() if k.startswith("default")})
    finally:
        for q in (sc.src, sc.dst):
            if q:
                q.stop()
    return figures


def report(sc, figures_path, baseline=None):
    f = sc.figures
    mig = f.get("migration", {})
    ram = mig.get("ram", {})
    print()
    print("QEMU migration of L2 (128 MiB unless told otherwise) from A to B:")
    print(f"  status            {mig.get('status')}")
    print(f"  dirty tracking    {'device (owner write recording)' if f.get('device_dirty_tracking') else 'none: all RAM dirty at every sync'}, "
          f"downtime limit {sc.opts.downtime_limit} ms")
    for key in ("total-time", "setup-time", "downtime", "expected-downtime"):
        if key in mig:
            print(f"  {key:<17} {mig[key]} ms")
    if "migration_wall_s" in f:
        print(f"  migrate to done   {f['migration_wall_s']:.1f} s (wall clock)")
    print(f"  RAM transferred   {ram.get('transferred', 0) / 2**20:.1f} MiB "
          f"(total {ram.get('total', 0) / 2**20:.0f} MiB, "
          f"{ram.get('dirty-sync-count')} dirty syncs)")
    if "vfio" in mig:
        print(f"  vfio transferred  {mig['vfio'].get('transferred')} bytes")
    if f.get("default_limit_ms") is not None:
        print(f"  at QEMU's default downtime limit ({f['default_limit_ms']} ms): "
              f"status {f.get('default_limit_status')} after "
              f"{f.get('default_limit_elapsed_s', 0):.0f} s, expected downtime "
              f"{f.get('default_limit_expected_downtime_ms')} ms, "
              f"{f.get('default_limit_syncs')} syncs")
    print(f"  L2 boot {f.get('l2_boot_s', 0):.0f} s")
    print(f"  L2 workload on A, last before the switchover: {f.get('l2_on_a_last')}")
    print(f"  L2 workload on B, at the end:                 {f.get('l2_after')}")
    print(f"  full verify on B:   {f.get('verify')}")
    print(f"  requests:           {f.get('requests')}")
    if baseline:
        bmig = baseline.get("migration", {})
        print("The same L2 with an emulated virtio-blk disk instead of the passthrough function:")
        print(f"  status {bmig.get('status')}, total-time {bmig.get('total-time')} ms, "
              f"downtime {bmig.get('downtime')} ms, migrate to done "
              f"{baseline.get('migration_wall_s', 0):.1f} s, RAM transferred "
              f"{bmig.get('ram', {}).get('transferred', 0) / 2**20:.1f} MiB")
        if baseline.get("default_limit_ms") is not None:
            print(f"  at the default downtime limit: status "
                  f"{baseline.get('default_limit_status')} after "
                  f"{baseline.get('default_limit_elapsed_s', 0):.0f} s")
        if mig.get("downtime") and bmig.get("downtime"):
            print(f"  downtime with the device / without: "
                  f"{mig['downtime'] / bmig['downtime']:.2f}")
    with open(figures_path, "w") as out:
        json.dump({"passthrough": f, "emulated": baseline}, out, indent=1, default=str)


def keep_logs():
    """QEMU's output and L2's consoles, kept in the build directory for the host."""
    out = os.path.join(RESULTS_DIR, "e2e-logs")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(RUN_DIR):
        if name.endswith((".console", ".stderr")):
            shutil.copy(os.path.join(RUN_DIR, name), out)
    with open(os.path.join(out, "dmesg"), "w") as f:
        f.write(subprocess.run(["dmesg"], capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suites", default="refuse,cancel,migrate")
    ap.add_argument("--report", action="store_true", help="print QEMU's figures at the end")
    ap.add_argument("--baseline", action="store_true",
                    help="also migrate the same L2 on an emulated disk (benchmark)")
    ap.add_argument("--l2-memory", type=int, default=128, help="MiB")
    ap.add_argument("--downtime-limit", type=int,
                    help="ms; the suites' limit (default: QEMU's with owners; 600000 without, "
                    "since QEMU then copies all RAM in the stop phase)")
    ap.add_argument("--observe", type=int, default=0,
                    help="first run the migration to B this many seconds at QEMU's default "
                    "downtime limit and record how it fares")
    ap.add_argument("--boot-timeout", type=int, default=480)
    ap.add_argument("--migrate-timeout", type=int, default=400)
    opts = ap.parse_args()
    os.makedirs(RUN_DIR, exist_ok=True)

    subprocess.run(["modprobe", DRIVER], check=True)
    # Owners first: a member finds its owner when it is bound.
    owners = owner_functions()
    opts.owners = bool(owners)
    if opts.downtime_limit is None:
        opts.downtime_limit = DEFAULT_DOWNTIME_LIMIT_MS if owners else 600000
    print(f"device dirty tracking through owners: {'yes' if owners else 'no'}; "
          f"downtime limit {opts.downtime_limit} ms")
    for bdf in owners:
        bind_owner(bdf)
        print(f"== owner at {bdf}, IOMMU group "
              f"{os.path.basename(os.readlink(f'/sys/bus/pci/devices/{bdf}/iommu_group'))}")
        for line in dmesg_lines(f"{bdf}"):
            print("   " + re.sub(r"^\[[^]]*\] ", "", line))
    functions = devsim_functions()
    print(f"device-model functions: {' '.join(functions)}")
    for i, bdf in enumerate(functions):
        bind(bdf)
        role = "ABC"[i] if i < 3 else "?"
        print(f"== {role} = devsim{i} at {bdf}, bound to {DRIVER}, "
              f"IOMMU group {os.path.basename(os.readlink(f'/sys/bus/pci/devices/{bdf}/iommu_group'))}")
        for line in dmesg_lines(f"{DRIVER} {bdf}"):
            print("   " + re.sub(r"^\[[^]]*\] ", "", line))
    sys.stdout.flush()

    suites = opts.suites.split(",")
    sc = Scenario(opts, functions)
    ok = True
    try:
        started = sc.start_source(vfio_device_args(functions[0]))
        boot = Suite("l2-boot")
        boot.check(started, f"L2 boots on A and blkcheck starts (in {sc.figures['l2_boot_s']:.0f} s)",
                   sc.src.console.text()[-2000:] + sc.src.stderr_text()[-1000:])
        ok &= boot.end()
        if started:
            for name in suites:
                ok &= {"refuse": sc.refuse, "cancel": sc.cancel,
                       "migrate": sc.migrate_to_b}[name]()
    finally:
        for q in (sc.src, sc.dst):
            if q:
                q.stop()
    keep_logs()
    baseline = baseline_without_passthrough(opts) if opts.baseline else None
    if opts.report or opts.baseline:
        name = "e2e-figures.json" if opts.owners else "e2e-figures-no-owners.json"
        report(sc, os.path.join(CACHE_DIR, "build/results", name), baseline)
    print(f"verdict: {'PASS' if ok else 'FAIL'}: QEMU live migration of L2 with a "
          f"passthrough virtio-blk function ({', '.join(suites)})")
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
