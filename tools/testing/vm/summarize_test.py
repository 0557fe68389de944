#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Self-test of summarize.py on small logs; prints TAP, exits non-zero on a wrong count.

    python3 tools/testing/vm/summarize_test.py
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep the source tree clean
import summarize  # noqa: E402

KSELFTEST_PASS = """\
@@suite pass
TAP version 13
1..2
# Starting 2 tests from 1 test cases.
ok 1 global.a
ok 2 global.b
# PASSED: 2 / 2 tests passed.
@@end pass rc=0
"""

KSELFTEST_FAIL = """\
@@suite fail
TAP version 13
1..3
ok 1 global.a
not ok 2 global.b
ok 3 global.c # SKIP no second function
@@end fail rc=1
"""

# kselftest_harness with every test skipped exits 0.
ALL_SKIPPED = """\
@@suite all-skipped
TAP version 13
1..2
ok 1 global.a # SKIP no device
ok 2 global.b # skip no device
@@end all-skipped rc=0
"""

# ksft_exit_skip() before the plan, then exit status KSFT_SKIP.
SKIP_PLAN = """\
@@suite skip-plan
TAP version 13
1..0 # SKIP no device-model function
@@end skip-plan rc=4
"""

# ksft_exit_skip() after some tests ran.
LATE_SKIP = """\
@@suite late-skip
TAP version 13
1..3
ok 1 first
ok 1 # SKIP the rest needs a second device
@@end late-skip rc=4
"""

# KSFT_SKIP without a skip line is not a skip.
SKIP_STATUS_ONLY = """\
@@suite skip-status
ok 1 setup
@@end skip-status rc=4
"""

# Results without a plan (e2e prints its plan last) count; a suite with neither fails.
NO_PLAN = """\
@@suite no-plan
TAP version 13
ok 1 - boots
ok 2 - migrates
@@end no-plan rc=0
@@suite empty
TAP version 13
# nothing ran
@@end empty rc=0
"""

# The guest stopped in the middle of the second suite.
CRASHED = """\
@@suite before
ok 1 - fine
@@end before rc=0
@@suite crashed
TAP version 13
1..4
ok 1 - one
ok 2 - two
[   12.345678] BUG: kernel NULL pointer dereference
"""

NO_END_MARKER = """\
@@suite first
ok 1 - one
@@suite second
ok 1 - two
@@end second rc=0
"""

# KUnit debugfs results: cases below their suite line, parameters below their case; a suite
# skipped as a whole has no cases.
KUNIT = """\
@@suite kunit
KTAP version 1
1..1
    KTAP version 1
    # Subtest: caps
    1..2
    ok 1 walk
    not ok 2 bad_bar
not ok 1 caps
KTAP version 1
1..1
    KTAP version 1
    # Subtest: params
    1..2
        KTAP version 1
        # Subtest: sizes
        ok 1 4k
        ok 2 2m
    ok 1 sizes
    ok 2 plain # SKIP not here
ok 1 params
KTAP version 1
1..1
ok 1 filtered # SKIP filtered out
@@end kunit rc=0
"""

KUNIT_ALL_SKIPPED = """\
@@suite kunit-skipped
KTAP version 1
1..1
    KTAP version 1
    # Subtest: mig
    1..2
    ok 1 a # SKIP no device
    ok 2 b # SKIP no device
ok 1 mig
@@end kunit-skipped rc=0
"""

CARGO = """\
running 3 tests
test a ... ok
test b ... ignored
test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out
"""

CARGO_IGNORED = """\
test result: ok. 0 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out
"""

# (description, log, expected results of summarize(): (name, passed, failed, skipped)).
CASES = [
    ("passing kselftest", KSELFTEST_PASS, [("pass", 2, 0, 0)]),
    ("failing kselftest", KSELFTEST_FAIL, [("fail", 1, 1, 1)]),
    ("every case skipped counts as skipped", ALL_SKIPPED, [("all-skipped", 0, 0, 2)]),
    ("an empty plan that skips, exit KSFT_SKIP, counts as skipped", SKIP_PLAN,
     [("skip-plan", 0, 0, 1)]),
    ("ksft_exit_skip after a plan", LATE_SKIP, [("late-skip", 1, 0, 1)]),
    ("KSFT_SKIP without a skip line fails", SKIP_STATUS_ONLY, [("skip-status", 1, 1, 0)]),
    ("missing plan counts results, empty suite fails", NO_PLAN,
     [("no-plan", 2, 0, 0), ("empty", 0, 1, 0)]),
    ("crashed suite fails", CRASHED,
     [("before", 1, 0, 0), ("crashed (guest stopped before it ended)", 0, 1, 0)]),
    ("suite without end marker fails", NO_END_MARKER,
     [("first (no end marker)", 0, 1, 0), ("second", 1, 0, 0)]),
    ("KUnit leaves at every depth", KUNIT, [("kunit", 3, 1, 2)]),
    ("KUnit suite with every case skipped", KUNIT_ALL_SKIPPED, [("kunit-skipped", 0, 0, 2)]),
    ("cargo summaries, ignored as skipped", CARGO, [(None, 6, 1, 1)]),
    ("cargo run with every test ignored", CARGO_IGNORED, [(None, 0, 0, 3)]),
    ("log without results fails", "compiling...\n", [(" (no results)", 0, 1, 0)]),
]


class Tap:
    def __init__(self, plan):
        self.n = self.failed = 0
        print("TAP version 13")
        print(f"1..{plan}")

    def check(self, ok, what, detail=""):
        self.n += 1
        print(f"{'ok' if ok else 'not ok'} {self.n} - {what}")
        if not ok:
            self.failed += 1
            # As comments: the summarizer reads this output too.
            for line in detail.splitlines():
                print(f"#   {line}")


def named(path, expected):
    """The cargo and no-results entries are named after their log."""
    return [(path if n is None else path + n if n.startswith(" (") else n, p, f, s)
            for n, p, f, s in expected]


def run_main(work, tap):
    """The command line of 'make check': per-suite files replace the console's copy."""
    results = os.path.join(work, "results")
    os.makedirs(results)
    console = os.path.join(work, "vm.log")
    with open(console, "w") as f:
        # The console lost the end of "b"; "c" never reached it.
        f.write(KSELFTEST_PASS + "@@suite b\nok 1 x\n")
    with open(os.path.join(results, "b.tap"), "w") as f:
        f.write("@@suite b\nok 1 x\nok 2 y # SKIP\n@@end b rc=0\n")
    with open(os.path.join(results, "c.tap"), "w") as f:
        f.write(SKIP_PLAN.replace("skip-plan", "c"))
    cargo = os.path.join(work, "core.log")
    with open(cargo, "w") as f:
        f.write(CARGO_IGNORED)
    missing = os.path.join(work, "missing.log")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "summarize.py"), "--results",
                           results, cargo, console, missing],
                          stdout=subprocess.PIPE, universal_newlines=True)
    lines = proc.stdout.splitlines()
    last = lines[-1] if lines else ""
    tap.check(last == "3 passed, 1 failed, 5 skipped" and proc.returncode == 1,
              "summarize.py closes with the totals and fails on a failure",
              f"rc={proc.returncode}\n{proc.stdout}")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "summarize.py"), cargo],
                          stdout=subprocess.PIPE, universal_newlines=True)
    tap.check(proc.stdout.splitlines()[-1:] == ["0 passed, 0 failed, 3 skipped"]
              and proc.returncode == 0,
              "a run that only skipped reports skips, not passes",
              f"rc={proc.returncode}\n{proc.stdout}")


def main():
    tap = Tap(len(CASES) + 2)
    with tempfile.TemporaryDirectory() as work:
        for i, (what, log, expected) in enumerate(CASES):
            path = os.path.join(work, f"case{i}.log")
            with open(path, "w") as f:
                f.write(log)
            got = summarize.summarize(path)
            want = named(path, expected)
            tap.check(got == want, what, f"got  {got}\nwant {want}")
        run_main(work, tap)
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
