"""Issue 12: the hostile-input probe set, judged probe by probe (benchmarks/probes.py).

The default set covers every failure class of the issue and what held before it; it runs once,
in a fresh ``python -m benchmarks.probes`` process (probes are forked from it), and each probe
is then a test here. For each: exit code, exactly one stderr line on a refusal, no traceback, no
partial output, output finite and below full scale, inputs unchanged, no hang, peak memory under
the ``memory-mb`` limit (plus the runner's footprint). `eigentone bench probes` runs the full set.

Two probes are also run as real ``python -m eigentone`` subprocesses, memory measured with
``resource.getrusage(RUSAGE_CHILDREN)``, so the fork runner is checked against the real entry point.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from benchmarks.probes import NYLON, Probe, notes_track, select, smf, table, totals
from eigentone import limits

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = select("default")


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "benchmarks.probes", "--set", "default"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=600, check=False)
    found = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            found[record["name"]] = record
    assert result.returncode == 0, result.stderr[-2000:]
    return found


def test_the_default_set_covers_every_failure_class_of_the_issue():
    names = " | ".join(p.name for p in DEFAULT)
    for words in ("gain-db nan", "Gain 1000 dB", "Infinity", "1 MHz", "-100 Hz", "Limiter", "300,000 modes",
                  "unreferenced", "24 h", "1,000,000-note", "10-minute WAV", "DC-only", "10 s per call",
                  "--voices 200000", "3000 reverbs", "note_range", "output_gain a string", "sigma null",
                  "100,000 deep", "MP3Compressor", "Resample", "read-only", "full disk", "is a directory", "/proc",
                  "--bend-range 1e6", "--voices -5", "0 ticks", "missing impulse", "checkpoint", "--out the MIDI",
                  "bundle being played", "tempo 0", "tempo 1", "SMPTE", "output_gain NaN", "release_time",
                  "trained_sample_rate", "SIGTERM", "escape sequences", "Invoked with", "JUCE", "ALSA",
                  "truncated bundle", "bad CRC", "path traversal", "sha256", "custom op", "external data",
                  "sigma < 0", "NaN from the model", "128 notes"):
        assert words in names, words


@pytest.mark.parametrize("probe", DEFAULT, ids=[p.name for p in DEFAULT])
def test_probe(probe: Probe, outcomes):
    outcome = outcomes.get(probe.name)
    assert outcome is not None, "the probe did not run"
    assert outcome["verdict"] in ("refused", "played"), (outcome["verdict"], outcome["detail"], outcome["problems"],
                                                         outcome["stderr"][-5:])
    assert not outcome["problems"]
    if probe.expect == "refused":
        assert outcome["code"] == 2 and len(outcome["stderr"]) == 1
    memory_mb = limits.LIMITS["memory-mb"].default
    assert outcome["peak_mb"] < memory_mb + 1024  # the runner's own footprint is a few hundred MB


def test_totals_table_has_zero_in_every_failure_column(outcomes):
    from benchmarks.probes import Outcome

    counts = totals([Outcome(**record) for record in outcomes.values()])
    assert counts["probes"] == len(DEFAULT)
    assert counts["tracebacks"] == counts["hangs"] == counts["bad outputs"] == counts["wrong answers"] == 0, \
        table(counts)


def _eigentone(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run the real console entry point; returns the result and the peak memory (MB) of the children so far."""
    result = subprocess.run([sys.executable, "-m", "eigentone", *args], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300, check=False)
    return result, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def test_real_subprocess_refuses_a_far_end_of_track_in_one_line_with_little_memory(tmp_path):
    (tmp_path / "far.mid").write_bytes(smf([notes_track([(0, 60, 1)], tempo=0xFFFFFF, end_delta=5000)], division=1))
    result, peak_mb = _eigentone(tmp_path, "render", "far.mid", "--model", NYLON, "--out", "out.wav")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "far.mid" in result.stderr and "song-seconds" in result.stderr
    assert not (tmp_path / "out.wav").exists() and peak_mb < limits.LIMITS["memory-mb"].default


def test_real_subprocess_plays_loud_input_below_full_scale_with_a_warning(tmp_path):
    (tmp_path / "song.mid").write_bytes(smf([notes_track([(0, 52, 480), (0, 59, 480), (240, 64, 480)])]))
    result, peak_mb = _eigentone(tmp_path, "render", "song.mid", "--model", NYLON, "--gain-db", "40", "--out",
                                 "out.wav")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "output guard" in result.stderr
    audio, _ = soundfile.read(tmp_path / "out.wav", dtype="float32")
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) < 1.0
    assert peak_mb < limits.LIMITS["memory-mb"].default
    assert (tmp_path / "out.wav").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
