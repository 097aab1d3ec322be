"""Summary of bench/durability.sh's raw runs: per synchronous mode, and per fault kind within
it, the faults, acknowledged and lost writes, two-writer findings and the write-unavailable
window (median, min-max). Usage: python3 bench/lib/durability_summary.py OUT_DIR MODE..."""
import glob
import json
import os
import statistics
import sys


def spread(values):
    if not values:
        return "-"
    values = sorted(values)
    return f"{statistics.median(values):.2f} ({values[0]:.2f}–{values[-1]:.2f})"


out, modes = sys.argv[1], sys.argv[2:]
print("\nmode     fault          faults  acknowledged  lost  two writers  write-unavailable, s: median (min–max)")
for mode in modes:
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, f"round*-{mode}.json")))]
    faults = [f for r in runs for f in r["faults"]]
    acked = sum(r["writes_acknowledged"] for r in runs)
    lost = sum(r["lost"] for r in runs)
    two = sum(len(r["two_writers"]) for r in runs)
    down = lambda fs: [f["unavailable_ms"] / 1000 for f in fs if f.get("unavailable_ms") is not None]
    print(f"{mode:<8} {'all':<14} {len(faults):6}  {acked:12,}  {lost:4}  {two:11}  {spread(down(faults))}")
    for kind in sorted({f["kind"] for f in faults}):
        of_kind = [f for f in faults if f["kind"] == kind]
        lost_kind = sum(f.get("lost") or 0 for f in of_kind)
        print(f"{'':<8} {kind:<14} {len(of_kind):6}  {'':>12}  {lost_kind:4}  {'':>11}  {spread(down(of_kind))}")
