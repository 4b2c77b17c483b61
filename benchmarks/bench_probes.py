"""`eigentone bench probes`: every careless and hostile input of the probe set, and the totals table of issue 12.

Runs the probes of benchmarks/probes.py (inputs generated on the spot: broken bundles and MIDI files,
hostile effects chains, bad numbers, outputs onto inputs, signals, training audio), prints one line per
probe and the table probes / clean refusals / safe outputs / tracebacks / hangs / bad outputs / wrong
answers, and exits non-zero unless every failure column is 0.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.probes import FAILURES, Outcome, run_probes, select, table, totals

HELP = "run the hostile-input probes (issue 12) and print the totals table; exits 1 on any failure"
EXAMPLE = "eigentone bench probes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="only probes whose name contains one of these")
    parser.add_argument("--set", choices=("all", "default"), default="all",
                        help="all probes (default), or the subset the test suite runs")


def _line(outcome: Outcome) -> None:
    mark = "ok  " if outcome.clean else "FAIL"
    what = outcome.detail if outcome.clean else "; ".join(outcome.problems) or outcome.detail
    held = " (held before)" if outcome.held else ""
    print(f"{mark} {outcome.verdict:<10} {outcome.seconds:5.1f} s {outcome.peak_mb:5.0f} MB  {outcome.name}{held}: "
          f"{what[:160]}", flush=True)


def run(args: argparse.Namespace) -> int:
    probes = select(args.set, args.names or None)
    print(f"{len(probes)} probes; each runs `eigentone ...` in a forked process and is judged on its exit code, "
          "stderr, output WAV, inputs, leftovers, memory and time", flush=True)
    outcomes = run_probes(probes, log=_line)
    counts = totals(outcomes)
    print()
    print(table(counts))
    failures = sum(counts[column] for column in FAILURES)
    print(f"\nfloor: 0 in every failure column ({', '.join(FAILURES)}): {'met' if not failures else 'MISSED'}")
    sys.stdout.flush()
    return 1 if failures else 0
