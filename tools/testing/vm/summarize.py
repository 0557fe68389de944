#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Sum the results of every test suite into one closing line: "N passed, N failed".

Understands cargo test summaries and the TAP/KTAP the VM run prints between
"@@suite NAME" and "@@end NAME" markers. A suite that started but never
ended (guest crash, timeout), or a log with no result at all, counts as a
failure: silence never passes. A suite that only skipped (every case
skipped, or a "1..0 # SKIP" plan) counts as skipped: it never passes.

With --results DIR, the guest's per-suite files (DIR/NAME.tap) replace what
the console showed of the same suite: the console can drop output.
"""

import os

import re
import sys

CARGO = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed(?:; (\d+) ignored)?")
TAP = re.compile(r"^(\s*)(not ok|ok) \d+(?: -)? ?(.*)$")
SKIP = re.compile(r"#\s*SKIP", re.IGNORECASE)
# ksft_exit_skip() before any test: an empty plan, and exit status KSFT_SKIP.
SKIP_PLAN = re.compile(r"^\s*1\.\.0\s*#\s*SKIP", re.IGNORECASE)
KSFT_SKIP = 4


def tap_counts(lines):
    """Count leaf results. KTAP prints a parent's line after its children, so a line
    below a deeper one sums those; a skipped KUnit suite has no children and counts."""
    passed = failed = skipped = 0
    prev = None
    for line in lines:
        if SKIP_PLAN.match(line):
            skipped += 1
            continue
        m = TAP.match(line)
        if not m:
            continue
        depth = len(m.group(1))
        parent = prev is not None and prev > depth
        prev = depth
        if parent:
            continue
        if SKIP.search(m.group(3)):
            skipped += 1
        elif m.group(2) == "ok":
            passed += 1
        else:
            failed += 1
    return passed, failed, skipped


def summarize(path):
    with open(path, errors="replace") as f:
        lines = [l.rstrip("\r\n") for l in f]
    results = []
    cargo = [CARGO.match(l) for l in lines]
    cargo = [m for m in cargo if m]
    if cargo:
        results.append((path, sum(int(m.group(1)) for m in cargo),
                        sum(int(m.group(2)) for m in cargo),
                        sum(int(m.group(3) or 0) for m in cargo)))
    suite, body = None, []
    for line in lines:
        start = re.match(r"^@@suite (\S+)", line)
        end = re.match(r"^@@end (\S+) rc=(-?\d+)", line)
        if start:
            if suite:
                results.append((suite + " (no end marker)", 0, 1, 0))
            suite, body = start.group(1), []
        elif end and suite:
            p, f, s = tap_counts(body)
            rc = int(end.group(2))
            # A kselftest that skipped exits KSFT_SKIP: not a failure when it said so.
            if rc != 0 and f == 0 and not (rc == KSFT_SKIP and s):
                f = 1  # the suite failed without a failing TAP line
            if p + f + s == 0:
                f = 1  # a suite that reported nothing failed
            results.append((suite, p, f, s))
            suite = None
        elif suite:
            body.append(line)
    if suite:
        results.append((suite + " (guest stopped before it ended)", 0, 1, 0))
    if not results:
        results.append((path + " (no results)", 0, 1, 0))
    return results


def suite_files(results_dir):
    """Results of the complete per-suite files in results_dir, by suite name."""
    found = {}
    if not results_dir or not os.path.isdir(results_dir):
        return found
    for entry in sorted(os.listdir(results_dir)):
        if entry.endswith(".tap"):
            for result in summarize(os.path.join(results_dir, entry)):
                found[result[0]] = result
    return found


def main():
    args = sys.argv[1:]
    results_dir = None
    if len(args) >= 2 and args[0] == "--results":
        results_dir, args = args[1], args[2:]
    files = suite_files(results_dir)
    merged = []
    for path in args:
        try:
            results = summarize(path)
        except OSError as e:
            results = [(f"{path} ({e.strerror})", 0, 1, 0)]
        for result in results:
            suite = result[0].split(" (")[0]
            if suite in files:
                merged.append(files.pop(suite))
            elif not (files and result[0] == f"{path} (no results)"):
                merged.append(result)
    # Suites the console lost entirely.
    merged.extend(files.values())
    total_p = total_f = total_s = 0
    for name, p, f, s in merged:
        print(f"  {name}: {p} passed, {f} failed, {s} skipped")
        total_p, total_f, total_s = total_p + p, total_f + f, total_s + s
    print(f"{total_p} passed, {total_f} failed, {total_s} skipped")
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main())
