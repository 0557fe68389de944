#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""QEMU's migration figures with device dirty tracking (owners) and without, side by side.

Reads the figure files e2e.py --report wrote in one make bench run:
build/results/e2e-figures.json (with owners) and e2e-figures-no-owners.json.
"""
import json
import os
import sys

RESULTS = os.path.join(os.environ.get("VVM_CACHE", "/var/cache/virtio-vfio-mig"), "build/results")


def load(name):
    try:
        with open(os.path.join(RESULTS, name)) as f:
            return json.load(f)["passthrough"]
    except (OSError, KeyError, ValueError) as e:
        print(f"# {name}: {e}")
        return None


def row(label, with_owner, without, unit="", ratio=True):
    cell = lambda v: "-" if v is None else f"{v}{unit}"
    line = f"  {label:<34} {cell(with_owner):>16} {cell(without):>16}"
    if ratio and isinstance(with_owner, (int, float)) and isinstance(without, (int, float)) \
            and without:
        line += f"   {with_owner / without:.3f}"
    print(line)


def main():
    dev, base = load("e2e-figures.json"), load("e2e-figures-no-owners.json")
    if dev is None or base is None:
        return 1
    mig, bmig = dev.get("migration", {}), base.get("migration", {})
    print("QEMU live migration of L2, device dirty tracking (owners) vs none (all RAM dirty):")
    print(f"  {'':<34} {'with owners':>16} {'without':>16}   ratio")
    row("status", mig.get("status"), bmig.get("status"), ratio=False)
    row("downtime limit of the run", dev.get("downtime_limit_ms", 300), base.get("downtime_limit_ms"), " ms", False)
    row("total-time", mig.get("total-time"), bmig.get("total-time"), " ms")
    row("downtime", mig.get("downtime"), bmig.get("downtime"), " ms")
    row("RAM transferred (MiB)", round(mig.get("ram", {}).get("transferred", 0) / 2**20, 1),
        round(bmig.get("ram", {}).get("transferred", 0) / 2**20, 1))
    row("dirty syncs", mig.get("ram", {}).get("dirty-sync-count"),
        bmig.get("ram", {}).get("dirty-sync-count"))
    row("at the default limit (300 ms)", mig.get("status"), base.get("default_limit_status"),
        ratio=False)
    if base.get("default_limit_elapsed_s") is not None:
        print(f"  without owners, the default limit had not converged after "
              f"{base['default_limit_elapsed_s']:.0f} s (expected downtime "
              f"{base.get('default_limit_expected_downtime_ms')} ms, "
              f"{base.get('default_limit_syncs')} syncs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
