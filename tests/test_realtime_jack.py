"""The real-time path against a real JACK server (dummy backend): `eigentone play` for >10 s with 32+ voices.

Also checked: JACK MIDI input (notes sent from this process to `play --midi-in`) and a refused
sample rate. The test starts its own jackd (own server name via JACK_DEFAULT_SERVER, stopped by PID) before
any PortAudio initialisation: the real-time part runs in a subprocess (`eigentone play`), which
plays a generated 32-voice MIDI file scheduled inside the audio callback by frame count and
records what the callback produced. Asserted: the run itself (callbacks for the whole duration,
32+ voices sounding), and that the recording is sample-identical to the offline render of the
same file. Printed: xruns and callback percentiles. Xruns on this shared 2-core VM also come
from the host stalling the VM (jackd then logs its own timer as late), so a zero-xrun assertion
would pass or fail by luck; set EIGENTONE_STRICT_XRUNS=1 to assert 0 xruns on a quiet machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.midi_file import write_demo_song
from engine.render import render_midi
from engine.synth import realtime_lookahead
from export.modal_bundle import write_modal_bundle
from plugins.effects import DEFAULT_CHAIN, EffectsChain

ROOT = Path(__file__).resolve().parent.parent
JACKD = shutil.which("jackd")
BLOCK = 128
RATE = 48000
SECONDS = 10.5

pytestmark = [pytest.mark.jack, pytest.mark.skipif(JACKD is None, reason="jackd not installed (apt-get install jackd2)")]


def _start_jackd(env: dict[str, str], log: Path) -> subprocess.Popen:
    realtime = ["-R", "-P", "70"] if os.geteuid() == 0 else ["-r"]
    with open(log, "w") as handle:
        server = subprocess.Popen([JACKD, "-n", env["JACK_DEFAULT_SERVER"], *realtime, "-d", "dummy", "-r",
                                   str(RATE), "-p", str(BLOCK)], env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if subprocess.run(["jack_lsp"], env=env, capture_output=True, check=False).returncode == 0:
            return server
        if server.poll() is not None:
            break
        time.sleep(0.2)
    server.kill()
    server.wait()
    raise RuntimeError(f"jackd did not start: {log.read_text()[-500:]}")


def _assert_worker_below_the_callback(output: str) -> None:
    placed = re.search(r"excite worker: CPUs [\d,]+, SCHED_FIFO (\d+) \(the audio callback's (\d+) less one\)", output)
    assert placed and int(placed[1]) == int(placed[2]) - 1, output


def _play(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eigentone", "play", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)


def _midi_input_run(env: dict[str, str], bundle: Path, monkeypatch) -> tuple[str, str]:
    """`eigentone play` listening on a JACK MIDI port that this test feeds 8 note-ons; returns its summary and its
    live-MIDI timing line."""
    import mido

    monkeypatch.setenv("JACK_DEFAULT_SERVER", env["JACK_DEFAULT_SERVER"])
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    keys = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True).open_output("test-keys", virtual=True)
    try:
        player = subprocess.Popen([sys.executable, "-m", "eigentone", "play", "--model", str(bundle), "--device",
                                   "system", "--block", str(BLOCK), "--midi-in", "test-keys", "--duration", "4"],
                                  env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in player.stderr:
            if line.startswith(("listening on MIDI input", "eigentone: error")):
                break
        time.sleep(1.0)  # let the player see a second of callbacks (its clock estimate settles)
        for note in range(60, 68):
            keys.send(mido.Message("note_on", note=note, velocity=100))
            time.sleep(0.0173)
        out, err = player.communicate(timeout=60)
    finally:
        keys.close()
    assert player.returncode == 0, err
    live = next((line for line in err.splitlines() if line.startswith("live MIDI:")), "")
    return out.strip().splitlines()[-1], live


def test_realtime_on_jack_matches_offline_render(tmp_path, monkeypatch):
    bundle = tmp_path / "string.etone"
    write_modal_bundle(bundle, modes=256)
    song = write_demo_song(tmp_path / "poly32.mid", seconds=11.0, polyphony=32, note_length=(1.5, 2.5))
    recording = tmp_path / "recorded.wav"
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"eigentone-test-{os.getpid()}", "JACK_NO_AUDIO_RESERVATION": "1",
           "JACK_NO_START_SERVER": "1"}
    server = _start_jackd(env, tmp_path / "jackd.log")
    try:
        refused = _play(env, "--model", str(bundle), "--midi-file", str(song), "--device", "system",
                        "--sample-rate", "44100", "--duration", "1")
        midi_summary, live_timing = _midi_input_run(env, bundle, monkeypatch)
        played = _play(env, "--model", str(bundle), "--midi-file", str(song), "--device", "system",
                       "--block", str(BLOCK), "--sample-rate", str(RATE), "--duration", str(SECONDS),
                       "--effects", str(DEFAULT_CHAIN), "--record", str(recording), "--record-format", "float")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    late_driver = (tmp_path / "jackd.log").read_text().count("JackTimedDriver::Process XRun")

    assert refused.returncode == 2 and refused.stderr.startswith("eigentone: error: "), refused.stderr
    assert "44100" in refused.stderr and "Traceback" not in refused.stderr

    print(f"\nJACK MIDI input: {midi_summary}\n{live_timing}")
    assert "8 voices max" in midi_summary  # the 8 note-ons sent through JACK MIDI were played
    # placed by the stream's clock: each note sounded exactly one block plus the synth's look-ahead after its arrival
    # on JACK's frame clock (stamps from Stream.time, blocks from time_info: were they on different clocks, the notes
    # would be late)
    latency = BLOCK + realtime_lookahead(BLOCK)  # the look-ahead of play's excite worker: one period here
    assert live_timing.startswith(f"live MIDI: 8 events, each sounded {latency}..{latency} frames after"), live_timing

    assert played.returncode == 0, played.stderr
    assert f"note-on to sound: {latency + 32} samples" in played.stderr, played.stderr
    if os.geteuid() == 0:
        _assert_worker_below_the_callback(played.stderr)
    summary = played.stdout.strip().splitlines()[-1]
    print(f"\n{summary}\njackd logged {late_driver} late cycles of its own timer (host stalls, not the client)")
    found = re.search(r"(\d+) xruns, (\d+) voices max, callback p50 ([\d.]+)% p99 ([\d.]+)%.*\((\d+) callbacks\)",
                      summary)
    assert found, summary
    xruns, voices, callbacks = int(found[1]), int(found[2]), int(found[5])
    assert voices >= 32
    assert callbacks >= 0.95 * SECONDS * RATE / BLOCK
    if os.environ.get("EIGENTONE_STRICT_XRUNS") == "1":
        assert xruns == 0

    live, rate = sf.read(recording, dtype="float32")
    offline = render_midi(song, bundle, sample_rate=RATE, block_size=BLOCK, effects=EffectsChain.from_json(DEFAULT_CHAIN))
    n = live.shape[0]
    assert rate == RATE and n >= 10 * RATE
    np.testing.assert_array_equal(live.T, offline.audio[:, :n])


def test_soak_engine_adds_no_xruns_beyond_the_do_nothing_baseline():
    """`eigentone bench soak`, short: a do-nothing client and the engine under the same JACK MIDI flood (sent by
    another process) on one JACK server. Every xrun is charged to a cause from the callbacks before it (printed).
    Passes only if at most 1 % of the engine's callbacks used more CPU time than the period (the engine keeps up
    with its own work), no output sample was non-finite or at full scale, and every allocation inside process has a
    named source. Xruns from preemption, waits or host stalls (the baseline measures those) are printed, not failed:
    on this shared VM their count is luck (docs/realtime.md). Checked: 1.2 periods of CPU time spent in every 50th
    SignalChain.process call fails it; two busy loops on both cores do not."""
    result = subprocess.run([sys.executable, "-m", "eigentone", "bench", "soak", "--seconds", "6"], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=300)
    print(f"\n{result.stdout}")
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"baseline\s+\d+s\s+(\d+)\s+(\d+)", result.stdout)
    engine = re.search(r"engine\s+(\d+)s\s+(\d+)\s+(\d+)", result.stdout)
    assert found and engine and int(engine[1]) >= 5 and int(engine[2]) > 0.9 * 6 * RATE / BLOCK
    assert "0 non-finite samples" in result.stdout and "NOT EXPLAINED" not in result.stdout
    assert re.search(r"excite worker \(look-ahead 128 samples\): CPU [\d.]+ s", result.stdout)
    if os.geteuid() == 0:  # jackd runs at SCHED_FIFO, and so does its client's callback thread: the worker one below
        _assert_worker_below_the_callback(result.stdout)
    assert re.search(r"^engine: entry delay .* p99\.9 [\d.]+% max [\d.]+% of the budget", result.stdout, re.MULTILINE)
    attributed = re.search(r"engine\s+\d+s\s+\d+\s+(\d+)" + r" \|\s+(\d+)" * 6 + r" \|", result.stdout)
    assert attributed and int(attributed[1]) == sum(int(attributed[k]) for k in range(2, 8))  # every xrun charged


def test_the_soak_sees_a_callback_wait_for_the_gil_before_it_enters_python(tmp_path):
    """The soak's entry delay (bench_soak.CallbackLog with JackClock: PortAudio's ``time_info.currentTime`` against
    JACK's frame clock read at the wrapper's first line) sees the wait for the GIL that happens before any of our
    code runs: while this thread holds the GIL for 4 ms (a ``ctypes.PyDLL`` call keeps it; 1.5 periods), the
    callback that PortAudio calls in that time cannot enter Python. Each hold covers at least one callback's start,
    which enters at least 4 - 2.67 ms = half a period late; nothing is timed by luck (a hold cannot be shorter)."""
    import ctypes

    import sounddevice as sd

    from benchmarks.bench_soak import CallbackLog, JackClock

    env = {**os.environ, "JACK_DEFAULT_SERVER": f"eigentone-entry-{os.getpid()}", "JACK_NO_AUDIO_RESERVATION": "1",
           "JACK_NO_START_SERVER": "1"}
    server = _start_jackd(env, tmp_path / "jackd.log")
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ.update({k: env[k] for k in saved})
    holds, usleep = 10, ctypes.PyDLL(None).usleep
    try:
        sd._terminate()
        sd._initialize()
        clock = JackClock("eigentone-test-clock")
        log = CallbackLog(4096, clock)
        stream = sd.OutputStream(samplerate=RATE, blocksize=BLOCK, device="system", channels=2, dtype="float32",
                                 callback=log.measure(lambda outdata, *_: outdata.fill(0.0)))
        stream.start()
        time.sleep(0.5)
        for _ in range(holds):
            usleep(4000)  # the GIL stays held: PyDLL
            time.sleep(0.1)
        stream.stop()
        stream.close()
        clock.close()
    finally:
        sd._terminate()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.terminate()
        server.wait(timeout=10)
        sd._initialize()  # as sounddevice's import left it
    delays = log.entry_delays() * RATE / BLOCK  # in periods
    print(f"\nentry delays over 0.4 periods: {np.round(delays[delays > 0.4], 2)}")
    assert log.count > 0.9 * 1.5 * RATE / BLOCK
    assert np.sum(delays > 0.4) >= holds
