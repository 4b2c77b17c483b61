"""Careless and hostile inputs, each with the answer eigentone must give: the probe set of `eigentone bench probes`.

Every probe builds its own inputs (MIDI bytes, bundles, effects chains, WAVs; nothing stored), runs
one ``eigentone`` command on them and judges the outcome:

* a refusal: exit code 2, exactly one stderr line ``eigentone: error: ...`` naming the input (and
  containing the expected words), no output file and no temporary file left;
* a played input: exit code 0, the output WAV exists, is finite, non-empty, every sample and its true
  (4x oversampled) peak are below full scale, its permissions follow the umask, no temporary file left;
* always: no traceback, no terminal control characters in stdout/stderr, every input file unchanged
  (hashes before and after), the command finished before its timeout (else: a hang) and its peak memory
  (``ru_maxrss`` of the process) stayed under the ``memory-mb`` limit plus the runner's own footprint.

Probes run in processes forked from a runner that has already imported and compiled the engine
(``preload``), so each costs only its own work; the child calls ``eigentone.cli.main`` exactly as the
console script does, with its stdout/stderr file descriptors redirected to files, and a Python-level
traceback printed as the interpreter would. ``os.wait4`` gives each child's resource usage.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import struct
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NYLON = str(ROOT / "assets" / "models" / "nylon-string.etone")
HARD_PLUCK = str(ROOT / "assets" / "models" / "hard-pluck.etone")
CONTROL_CHARS = {chr(c) for c in range(32) if chr(c) not in "\n"} | {"\x7f"} | {chr(c) for c in range(0x80, 0xA0)}


# ----------------------------------------------------------------------------------------- probe definitions


@dataclass
class Probe:
    """One hostile or careless input and the answer expected.

    make(folder) builds the inputs in ``folder`` and returns the eigentone arguments (run with ``folder``
    as the working directory). expect: "refused", "plays" (a WAV at ``out``), "lists" (stdout only) or
    "terminated" (signal ``signum`` after ``signal_after`` s: exit 128 + signum, nothing written). ``says``: words the
    error line must contain; ``names``: the input the error line must name (default: derived by make).
    ``tier``: "default" (the test suite) or "bench" (only `eigentone bench probes --set all`).
    ``held``: the behaviour already held before issue 12 (kept as a regression probe). ``extra_mb``: a tighter
    memory bound for probes about memory: peak at most the runner's resident size plus this.
    """

    name: str
    make: Callable[[Path], list[str]]
    expect: str = "refused"
    says: str = ""
    names: str = ""
    out: str | None = "out.wav"
    tier: str = "default"
    held: bool = False
    timeout: float = 60.0
    signal_after: float | None = None
    signum: int = signal.SIGTERM
    extra_mb: float | None = None
    file_size_limit: int | None = None
    unprivileged: bool = False
    torch: bool = False


# ----------------------------------------------------------------------------------------- file makers


def smf(tracks: list[bytes], division: int = 480, fmt: int | None = None) -> bytes:
    """A Standard MIDI File from raw track bodies (delta-time + event bytes each)."""
    fmt = (0 if len(tracks) == 1 else 1) if fmt is None else fmt
    head = b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division)
    return head + b"".join(b"MTrk" + struct.pack(">I", len(body)) + body for body in tracks)


def vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def notes_track(notes: list[tuple[int, int, int]], tempo: int | None = None, end_delta: int = 0) -> bytes:
    """Track body: optional set_tempo, then (delta, note, duration in ticks) note-on/off pairs, end of track."""
    parts = [b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")] if tempo is not None else []
    parts += [vlq(delta) + bytes([0x90, note, 100]) + vlq(duration) + bytes([0x80, note, 0])
              for delta, note, duration in notes]
    return b"".join(parts) + vlq(end_delta) + b"\xff\x2f\x00"


def song(folder: Path, name: str = "song.mid") -> str:
    """A 2-second song: a few notes of the nylon string's range."""
    path = folder / name
    path.write_bytes(smf([notes_track([(0, 52, 240), (0, 59, 240), (240, 64, 480), (120, 71, 480)])]))
    return name


def modal(folder: Path, file: str = "b.etone", **options) -> str:
    """A valid analytic modal bundle (16 modes, notes 30-100 unless ``options`` say otherwise) at ``folder/file``."""
    from export.modal_bundle import write_modal_bundle

    options.setdefault("modes", 16)
    options.setdefault("note_range", (30, 100))
    write_modal_bundle(folder / file, **options)
    return file


def rezip(src: Path, dst: Path, manifest_edit: Callable[[dict], object] | None = None,
          files_edit: Callable[[dict], object] | None = None, raw_manifest: bytes | None = None,
          compression: int = zipfile.ZIP_DEFLATED) -> None:
    """Copy a bundle archive with its manifest (dict or raw bytes) and/or members edited."""
    with zipfile.ZipFile(src) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files["manifest.json"])
    if manifest_edit:
        manifest_edit(manifest)
    files["manifest.json"] = raw_manifest if raw_manifest is not None else json.dumps(manifest).encode()
    if files_edit:
        files_edit(files)
    with zipfile.ZipFile(dst, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def edited(folder: Path, edit: Callable[[dict], object], name: str = "bad.etone", raw: bytes | None = None) -> str:
    """A valid 16-mode bundle whose manifest is then edited (the sha256s stay right)."""
    modal(folder, "src.etone")
    rezip(folder / "src.etone", folder / name, manifest_edit=edit, raw_manifest=raw)
    (folder / "src.etone").unlink()
    return name


def patched_bundle(folder: Path, output: str, build: Callable[[str, str], list], name: str = "b.etone",
                   modes: int = 16, initializers: list | None = None, opsets: list | None = None,
                   bundle_name: str = "patched") -> str:
    """A modal bundle whose excite output ``output`` is replaced by ``build(raw_name, output)`` nodes applied to
    the original value (renamed ``raw_name``)."""
    import onnx

    from export.bundle_writer import write_bundle
    from export.modal_bundle import excite_graph

    model = onnx.load_from_string(excite_graph(modes))
    raw = output + "_raw"
    for node in model.graph.node:
        node.output[:] = [raw if o == output else o for o in node.output]
        node.input[:] = [raw if i == output else i for i in node.input]
    model.graph.node.extend(build(raw, output))
    model.graph.initializer.extend(initializers or [])
    model.opset_import.extend(opsets or [])
    write_bundle(folder / name, name=bundle_name, family="modal", modes=modes,
                 graphs={"excite": model.SerializeToString()}, note_range=(30, 100), trained_sample_rate=48000)
    return name


def const(name: str, value) -> object:
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.float32), name))


def slow_chain(matmuls: int, size: int = 512) -> Callable[[str, str], list]:
    """Nodes that add 0 x (a chain of ``matmuls`` size x size matrix products of the controls) to an output:
    a graph that is slow per call but still correct."""
    from onnx import helper

    def build(raw: str, out: str) -> list:
        q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((size, size)))
        nodes = [const("w_slow", q), const("zero_slow", 0.0),
                 helper.make_node("ReduceSum", ["controls"], ["s_slow"], keepdims=0),
                 helper.make_node("Mul", ["w_slow", "s_slow"], ["m0"])]
        for i in range(matmuls):
            nodes.append(helper.make_node("MatMul", [f"m{i}", "w_slow"], [f"m{i + 1}"]))
        nodes += [helper.make_node("ReduceSum", [f"m{matmuls}"], ["t_slow"], keepdims=0),
                  helper.make_node("Mul", ["t_slow", "zero_slow"], ["t0_slow"]),
                  helper.make_node("Add", [raw, "t0_slow"], [out])]
        return nodes

    return build


def scaled(factor: float) -> Callable[[str, str], list]:
    from onnx import helper

    return lambda raw, out: [const("k_scaled", factor), helper.make_node("Mul", [raw, "k_scaled"], [out])]


def negated_above(note: float | None) -> Callable[[str, str], list]:
    """sigma -> -sigma (for every note, or only for notes above ``note``): growing, unstable modes."""
    from onnx import helper

    def build(raw: str, out: str) -> list:
        nodes = [helper.make_node("Neg", [raw], ["neg_sigma"])]
        if note is None:
            return [*nodes, helper.make_node("Identity", ["neg_sigma"], [out])]
        return nodes + [
            const("limit_note", [[note]]),
            helper.make_node("Constant", [], ["cols"], value_ints=[0]),
            helper.make_node("Constant", [], ["cole"], value_ints=[1]),
            helper.make_node("Constant", [], ["axis1"], value_ints=[1]),
            helper.make_node("Slice", ["controls", "cols", "cole", "axis1"], ["note_col"]),
            helper.make_node("Greater", ["note_col", "limit_note"], ["high"]),
            helper.make_node("Where", ["high", "neg_sigma", raw], [out]),
        ]

    return build


def wav(path: Path, seconds: float, rate: int = 16000, dc: float = 0.0, note_hz: float = 220.0) -> None:
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    x = dc + (0.5 * np.exp(-2 * t) * np.sin(2 * np.pi * note_hz * t) if note_hz else 0.0) * np.ones_like(t)
    soundfile.write(str(path), x.astype(np.float32), rate, subtype="PCM_16")


def zip_with_big_member(folder: Path, megabytes: int) -> str:
    """A valid bundle plus an unreferenced member of ``megabytes`` MB of zeros (deflated to ~1/1000)."""
    modal(folder, "b.etone")
    with (zipfile.ZipFile(folder / "b.etone", "a", compression=zipfile.ZIP_DEFLATED) as archive,
          archive.open("padding.bin", "w", force_zip64=True) as member):
        chunk = bytes(1 << 24)
        for _ in range(megabytes // 16):
            member.write(chunk)
    return "b.etone"


def chain(folder: Path, entries: list, name: str = "fx.json", raw: str | None = None) -> str:
    (folder / name).write_text(raw if raw is not None else json.dumps(entries))
    return name


def render(folder: Path, *extra: str, model: str = NYLON, midi: str | None = None) -> list[str]:
    return ["render", midi or song(folder), "--model", model, "--out", "out.wav", *extra]


# ----------------------------------------------------------------------------------------- the catalogue


def catalogue() -> list[Probe]:
    """Every probe: the failures listed in issue 12 (fixed) and what held before it (kept)."""
    p: list[Probe] = []
    add = p.append

    # 1. non-finite or full-scale audio
    add(Probe("--gain-db nan", lambda f: render(f, "--gain-db", "nan"), says="--gain-db"))
    add(Probe("--gain-db inf", lambda f: render(f, "--gain-db", "inf"), says="--gain-db"))
    add(Probe("--gain-db 40 (loud, allowed): limited below full scale",
              lambda f: render(f, "--gain-db", "40"), expect="plays"))
    add(Probe("effect Gain 1000 dB", lambda f: render(f, "--effects", chain(f, [{"effect": "Gain", "gain_db": 1000}])),
              says="gain_db", names="fx.json"))
    add(Probe("effect Gain Infinity (JSON token)", lambda f: render(
        f, "--effects", chain(f, [], raw='[{"effect": "Gain", "gain_db": Infinity}]')), says="Infinity", names="fx.json"))
    add(Probe("effect Gain 1e999", lambda f: render(
        f, "--effects", chain(f, [], raw='[{"effect": "Gain", "gain_db": 1e999}]')), says="finite", names="fx.json"))
    add(Probe("HighpassFilter at 1 MHz", lambda f: render(
        f, "--effects", chain(f, [{"effect": "HighpassFilter", "cutoff_frequency_hz": 1e6}])),
        says="cutoff_frequency_hz", names="fx.json"))
    add(Probe("LowpassFilter at -100 Hz", lambda f: render(
        f, "--effects", chain(f, [{"effect": "LowpassFilter", "cutoff_frequency_hz": -100}])),
        says="cutoff_frequency_hz", names="fx.json"))
    add(Probe("Gain +40 then Limiter -1 dB: below full scale", lambda f: render(
        f, "--effects", chain(f, [{"effect": "Gain", "gain_db": 40}, {"effect": "Limiter", "threshold_db": -1}])),
        expect="plays"))
    add(Probe("8 x Gain +100 dB then a filter (Inf, then NaN, after the synth): zeroed", lambda f: render(
        f, "--effects", chain(f, [{"effect": "Gain", "gain_db": 100}] * 8
                              + [{"effect": "HighpassFilter", "cutoff_frequency_hz": 20}])), expect="plays"))
    add(Probe("readout weights x1e30 (Inf samples in the synth)", lambda f: render(
        f, model=patched_bundle(f, "c", scaled(1e30))), expect="plays"))
    add(Probe("--no-limit with a pcm24 WAV", lambda f: render(f, "--no-limit"), says="--no-limit"))

    # 2. memory
    add(Probe("bundle declaring 300,000 modes", lambda f: render(
        f, model=edited(f, lambda m: m.update(modes=300_000))), says="modes", names="bad.etone"))
    add(Probe("300,000 modes with --limit modes raised: memory estimate refused", lambda f: render(
        f, "--limit", "modes=400000", model=edited(f, lambda m: m.update(modes=300_000))),
        says="memory-mb", names="bad.etone"))
    add(Probe("unreferenced 256 MB member: list reads only the manifest and graphs",
              lambda f: ["list", zip_with_big_member(f, 256)], expect="lists", out=None, extra_mb=128))
    add(Probe("unreferenced 1 GB member: render", lambda f: render(f, model=zip_with_big_member(f, 1024)),
              expect="plays", tier="bench", timeout=120, extra_mb=128))
    add(Probe("MIDI end of track 24 h away (tempo 16777215, 1 tick per beat)", lambda f: render(
        f, midi=_write(f, "far.mid", smf([notes_track([(0, 60, 1)], tempo=0xFFFFFF, end_delta=5000)], division=1)))
        , says="song-seconds", names="far.mid"))
    add(Probe("1,000,000-note MIDI file", lambda f: render(
        f, midi=_write(f, "million.mid", smf([notes_track([(1, 40 + i % 40, 1) for i in range(1_000_000)])]))),
        says="midi-events", names="million.mid", timeout=90))
    add(Probe("--voices 1024 x 4096-mode bundle with --limit memory-mb=64", lambda f: render(
        f, "--voices", "1024", "--limit", "memory-mb=64", model=modal(f, modes=4096)),
        says="memory-mb", timeout=90))
    add(Probe("--voices 4096 (limit raised) x 256 modes with --limit memory-mb=70: the voices' estimate", lambda f: render(
        f, "--voices", "4096", "--limit", "voices=4096", "--limit", "memory-mb=70", model=modal(f, modes=256)),
        says="4096 voices", names="memory-mb"))
    add(Probe("10-minute WAV for train ssm", lambda f: ["train", "ssm", _wav(f, "long.wav", 600, rate=8000), "--out",
                                                       "run", "--quiet"],
              says="recording-seconds", names="long.wav", out=None, torch=True))
    add(Probe("DC-only WAV for train ssm", lambda f: ["train", "ssm", _wav(f, "dc.wav", 1.0, dc=0.5, note_hz=0),
                                                     "--out", "run", "--quiet"],
              says="DC", names="dc.wav", out=None, torch=True))

    # 3. hangs
    add(Probe("excite graph taking ~10 s per call", lambda f: render(f, model=patched_bundle(f, "sigma", slow_chain(400, 1024))),
              says="graph-call-ms", names="b.etone", timeout=60))
    add(Probe("slow excite graph (>= 5 ms per call): load-time estimate over --limit load-seconds=0.05", lambda f: render(
        f, "--limit", "load-seconds=0.05", model=patched_bundle(f, "sigma", slow_chain(4))), says="load-seconds",
        names="b.etone"))
    add(Probe("--voices 200000 with hard-pluck", lambda f: render(f, "--voices", "200000", model=HARD_PLUCK),
              says="voices"))
    add(Probe("chain of 3000 reverbs", lambda f: render(f, "--effects", chain(f, [{"effect": "Reverb"}] * 3000)),
              says="effects", names="fx.json"))

    # 4. tracebacks -> one line
    for label, edit in (("empty", []), ("strings", ["a", "b"]), ("1e999", "1e999"), ("reversed", [80, 40])):
        add(Probe(f"manifest note_range {label}", _note_range_probe(edit), says="note_range", names="bad.etone"))
    add(Probe("manifest output_gain a string", lambda f: render(f, model=edited(f, lambda m: m.update(output_gain="x"))),
              says="output_gain", names="bad.etone"))
    add(Probe("manifest output_gain a list", lambda f: render(f, model=edited(f, lambda m: m.update(output_gain=[1]))),
              says="output_gain", names="bad.etone"))
    add(Probe("manifest outputs.sigma null", lambda f: render(f, model=edited(
        f, lambda m: m["graphs"]["excite"]["outputs"].update(sigma=None))), says="sigma", names="bad.etone"))
    add(Probe("manifest nested 100,000 deep", lambda f: render(f, model=edited(
        f, lambda m: None, raw=b'{"training": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
        says="manifest", names="bad.etone"))
    add(Probe("effect MP3Compressor (0-sample blocks)", lambda f: render(
        f, "--effects", chain(f, [{"effect": "MP3Compressor"}])), says="MP3Compressor", names="fx.json"))
    add(Probe("effect Resample (0-sample blocks)", lambda f: render(
        f, "--effects", chain(f, [{"effect": "Resample"}])), says="Resample", names="fx.json"))
    add(Probe("--out in a read-only folder", _readonly_out, says="cannot write", names="ro", unprivileged=True))
    add(Probe("--out on a full disk (file-size limit)", lambda f: render(f, "--format", "float"),
              says="could not", names="out.wav", file_size_limit=64 * 1024))
    add(Probe("--out is a directory", lambda f: [*render(f)[:-2], "--out", _mkdir(f, "outdir")], says="directory",
              names="outdir", out=None))
    add(Probe("--out in /proc", lambda f: [*render(f)[:-2], "--out", "/proc/eigentone-probe.wav"],
              says="/proc", out=None))
    add(Probe("--bend-range 1e6", lambda f: render(f, "--bend-range", "1e6"), says="--bend-range"))
    add(Probe("--voices -5", lambda f: render(f, "--voices", "-5"), says="--voices"))
    add(Probe("MIDI with 0 ticks per beat", lambda f: render(
        f, midi=_write(f, "zero.mid", smf([notes_track([(0, 60, 10)])], division=0))), says="ticks per beat",
        names="zero.mid"))
    add(Probe("Convolution with a missing impulse file", lambda f: render(
        f, "--effects", chain(f, [{"effect": "Convolution", "impulse_response_filename": "nope.wav"}])),
        says="nope.wav", names="fx.json"))
    add(Probe("effect Gain with a string gain (pybind 'Invoked with')", lambda f: render(
        f, "--effects", chain(f, [{"effect": "Gain", "gain_db": "loud"}])), says="Gain", names="fx.json"))
    add(Probe("VST3 that is not a plugin (JUCE scan)", lambda f: render(
        f, "--effects", chain(f, [{"vst3": _mkdir(f, "fake.vst3")}])), says="fake.vst3", names="fx.json"))
    add(Probe("play on a missing audio device (ALSA/JACK noise)", lambda f: [
        "play", "--model", NYLON, "--device", "no-such-device", "--duration", "1"], says="no-such-device", out=None))
    add(Probe("corrupt checkpoint.pt on resume", _corrupt_checkpoint, says="delete", names="checkpoint.pt", out=None,
              torch=True, timeout=120))

    # 5. inputs overwritten
    add(Probe("--out the MIDI file", lambda f: [*render(f)[:-2], "--out", "song.mid"], says="input", names="song.mid",
              out=None))
    add(Probe("--out the bundle being played", lambda f: [*render(f, model=modal(f))[:-2], "--out", "b.etone"],
              says="input", names="b.etone", out=None))
    add(Probe("--out a symlink to the MIDI file", lambda f: [*render(f)[:-2], "--out", _link(f, "song.mid", "l.wav")],
              says="input", names="song.mid", out=None))
    add(Probe("--out a hard link to the bundle", lambda f: [
        *render(f, model=modal(f))[:-2], "--out", _link(f, "b.etone", "h.wav", hard=True)], says="input",
        names="h.wav", out=None))
    add(Probe("--out the effects chain", lambda f: ["render", song(f), "--model", NYLON, "--effects",
                                                    chain(f, [{"effect": "Reverb"}]), "--out", "fx.json"],
              says="input", names="fx.json", out=None))
    add(Probe("--spectrogram the MIDI file", lambda f: render(f, "--spectrogram", "song.mid"), says="input",
              names="song.mid"))

    # 6. silent nonsense
    add(Probe("MIDI tempo 0", lambda f: render(
        f, midi=_write(f, "t0.mid", smf([notes_track([(0, 60, 100)], tempo=0)]))), says="tempo", names="t0.mid"))
    add(Probe("MIDI tempo 1 µs per beat", lambda f: render(
        f, midi=_write(f, "t1.mid", smf([notes_track([(0, 60, 100)], tempo=1)]))), says="midi-bpm", names="t1.mid"))
    add(Probe("SMPTE-division MIDI (25 fps x 40 ticks): plays with its real length", lambda f: render(
        f, midi=_write(f, "smpte.mid", smf([notes_track([(0, 60, 500), (500, 64, 500)])], division=0xE728))),
        expect="plays"))
    add(Probe("manifest output_gain NaN", lambda f: render(f, model=edited(
        f, lambda m: None, raw=_nan_manifest())), says="NaN", names="bad.etone"))
    add(Probe("manifest output_gain 0", lambda f: render(f, model=edited(f, lambda m: m.update(output_gain=0))),
              says="output_gain", names="bad.etone"))
    add(Probe("manifest release_time Infinity", lambda f: render(f, model=edited(
        f, lambda m: m.update(release_time=float("inf")))), says="Infinity", names="bad.etone"))
    add(Probe("manifest trained_sample_rate -16000", lambda f: render(f, model=edited(
        f, lambda m: m.update(trained_sample_rate=-16000))), says="trained_sample_rate", names="bad.etone"))
    add(Probe("manifest trained_sample_rate 0", lambda f: render(f, model=edited(
        f, lambda m: m.update(trained_sample_rate=0))), says="trained_sample_rate", names="bad.etone"))

    # 7. leftovers and permissions
    add(Probe("SIGTERM during a long render", lambda f: render(f, midi=_write(
        f, "long.mid", smf([notes_track([(480, 40 + i % 40, 240) for i in range(1200)])]))),
        expect="terminated", signal_after=3.0, timeout=60))
    add(Probe("SIGINT (Ctrl-C) during a long render", lambda f: render(f, midi=_write(
        f, "long.mid", smf([notes_track([(480, 40 + i % 40, 240) for i in range(1200)])]))),
        expect="terminated", signal_after=3.0, signum=signal.SIGINT, timeout=60, tier="bench"))
    add(Probe("long render: estimate and progress lines", lambda f: render(f, midi=_write(
        f, "long.mid", smf([notes_track([(960, 40 + i % 40, 240) for i in range(130)])]))),
        expect="plays", timeout=120, tier="bench"))

    # 8. terminal injection
    evil = "\x1b]0;pwned\x07\x1b[2J\x1b[31mevil"
    add(Probe("bundle named with escape sequences: list", lambda f: [
        "list", edited(f, lambda m: m.update(name=evil, description=evil), "evil.etone")], expect="lists", out=None))
    add(Probe("bundle file named with escape sequences: error line", lambda f: render(
        f, model=edited(f, lambda m: m.update(modes=0), evil + ".etone")), says="modes", names="evil.etone"))
    add(Probe("bundle named with escape sequences: render warning", lambda f: render(
        f, model=modal(f, name=evil, nan_notes=(59,))), expect="plays"))

    # already held before issue 12
    add(Probe("truncated bundle archive", lambda f: render(f, model=_truncated(f)), says="archive", names="cut.etone",
              held=True))
    add(Probe("bad CRC in a stored member", lambda f: render(f, model=_bad_crc(f)), says="excite.onnx",
              names="crc.etone", held=True))
    add(Probe("path traversal in the manifest's file name", lambda f: render(f, model=edited(
        f, lambda m: m["graphs"]["excite"].update(file="../../excite.onnx"))), says="plain file name",
        names="bad.etone", held=True))
    add(Probe("path traversal: folder bundle member linking outside", _link_outside, says="outside", held=True))
    add(Probe("path traversal: archive entry '../../evil.onnx'", lambda f: render(f, model=_traversal_entry(f)),
              says="outside", names="evil.etone", held=True))
    add(Probe("sha256 mismatch", lambda f: render(f, model=_sha_mismatch(f)), says="sha256", names="sha.etone",
              held=True))
    add(Probe("custom op in the excite graph", lambda f: render(f, model=_custom_op(f)), says="onnxruntime",
              names="b.etone", held=True))
    add(Probe("ONNX external data pointing at /etc/passwd", lambda f: render(f, model=_external_data(f)),
              says="onnxruntime", names="b.etone", held=True))
    add(Probe("sigma < 0 at the probe note", lambda f: render(f, model=patched_bundle(f, "sigma", negated_above(None))),
              says="negative sigma", names="b.etone", held=True))
    add(Probe("sigma < 0 above note 70 (played)", lambda f: render(
        f, model=patched_bundle(f, "sigma", negated_above(70.0)), midi=_write(
            f, "high.mid", smf([notes_track([(0, 60, 480), (0, 76, 960), (0, 88, 960)])]))), expect="plays",
        held=True))
    add(Probe("NaN from the model for one note", lambda f: render(f, model=modal(f, nan_notes=(59,))), expect="plays",
              held=True))
    add(Probe("sustain pedal with all 128 notes", lambda f: render(f, midi=_write(f, "all.mid", _all_notes())),
              expect="plays", held=True))
    add(Probe("the demo, default chain", lambda f: ["render", str(ROOT / "assets" / "demo" / "demo.mid"), "--effects",
                                                    str(ROOT / "assets" / "effects" / "default.json"), "--out",
                                                    "out.wav"], expect="plays", held=True, timeout=120, tier="bench"))
    return p


def _write(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return name


def _wav(folder: Path, name: str, seconds: float, **options) -> str:
    wav(folder / name, seconds, **options)
    return name


def _mkdir(folder: Path, name: str) -> str:
    (folder / name).mkdir()
    (folder / name / "junk").write_text("not a plugin")
    return name


def _link(folder: Path, target: str, name: str, hard: bool = False) -> str:
    (os.link if hard else os.symlink)(target if not hard else folder / target, folder / name)
    return name


def _note_range_probe(value) -> Callable[[Path], list[str]]:
    def make(f: Path) -> list[str]:
        if value == "1e999":
            modal(f, "src.etone")
            with zipfile.ZipFile(f / "src.etone") as archive:
                text = archive.read("manifest.json").decode()
            manifest = json.loads(text)
            manifest["note_range"] = "RANGE"
            raw = json.dumps(manifest).replace('"RANGE"', "[1e999, 60]").encode()
            rezip(f / "src.etone", f / "bad.etone", raw_manifest=raw)
            (f / "src.etone").unlink()
            return render(f, model="bad.etone")
        return render(f, model=edited(f, lambda m: m.update(note_range=value)))

    return make


def _nan_manifest() -> bytes:
    from export.modal_bundle import write_modal_bundle

    tmp = Path(tempfile.mkdtemp())
    manifest = write_modal_bundle(tmp / "x.etone", modes=16)
    shutil.rmtree(tmp)
    manifest["output_gain"] = "GAIN"
    return json.dumps(manifest).replace('"GAIN"', "NaN").encode()


def _readonly_out(folder: Path) -> list[str]:
    ro = folder / "ro"
    ro.mkdir()
    # the probe runs as nobody: a checkout under a private folder (mktemp -d is 0700) would hide the shipped bundle
    model = folder / "nylon-string.etone"
    shutil.copyfile(NYLON, model)
    argv = [*render(folder, model=model.name)[:-2], "--out", "ro/out.wav"]
    ro.chmod(0o555)
    return argv


def _corrupt_checkpoint(folder: Path) -> list[str]:
    (folder / "run").mkdir()
    (folder / "run" / "checkpoint.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    return ["train", "ssm", _wav(folder, "A3_v100.wav", 0.3, note_hz=220.0), "--out", "run", "--steps", "2", "--quiet"]


def _truncated(folder: Path) -> str:
    modal(folder, "b.etone")
    data = (folder / "b.etone").read_bytes()
    (folder / "cut.etone").write_bytes(data[: len(data) // 2])
    (folder / "b.etone").unlink()
    return "cut.etone"


def _bad_crc(folder: Path) -> str:
    modal(folder, "b.etone")
    rezip(folder / "b.etone", folder / "crc.etone", compression=zipfile.ZIP_STORED)
    data = bytearray((folder / "crc.etone").read_bytes())
    with zipfile.ZipFile(folder / "crc.etone") as archive:
        info = archive.getinfo("excite.onnx")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + 100] ^= 0xFF  # a byte inside the stored graph
    (folder / "crc.etone").write_bytes(bytes(data))
    (folder / "b.etone").unlink()
    return "crc.etone"


def _sha_mismatch(folder: Path) -> str:
    import onnx

    def flip(files: dict) -> None:
        model = onnx.load_from_string(files["excite.onnx"])
        model.doc_string = "edited after export"
        files["excite.onnx"] = model.SerializeToString()

    modal(folder, "b.etone")
    rezip(folder / "b.etone", folder / "sha.etone", files_edit=flip)
    (folder / "b.etone").unlink()
    return "sha.etone"


def _custom_op(folder: Path) -> str:
    from onnx import helper

    return patched_bundle(folder, "sigma", lambda raw, out: [helper.make_node("Pwn", [raw], [out], domain="com.evil")],
                          opsets=[helper.make_opsetid("com.evil", 1)])


def _external_data(folder: Path) -> str:
    from onnx import TensorProto, helper, numpy_helper

    tensor = numpy_helper.from_array(np.zeros(4, np.float32), "ext_w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../../etc/passwd"), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value

    def build(raw: str, out: str) -> list:
        return [const("zero_ext", 0.0), helper.make_node("ReduceSum", ["ext_w"], ["ext_s"], keepdims=0),
                helper.make_node("Mul", ["ext_s", "zero_ext"], ["ext_0"]), helper.make_node("Add", [raw, "ext_0"], [out])]

    return patched_bundle(folder, "sigma", build, initializers=[tensor])


def _traversal_entry(folder: Path) -> str:
    modal(folder, "b.etone")
    rezip(folder / "b.etone", folder / "evil.etone", files_edit=lambda files: files.update({"../../evil.onnx": b"x"}))
    (folder / "b.etone").unlink()
    return "evil.etone"


def _link_outside(folder: Path) -> list[str]:
    modal(folder, "b.etone")
    bundle = folder / "unpacked"
    with zipfile.ZipFile(folder / "b.etone") as archive:
        archive.extractall(bundle)
    (folder / "b.etone").unlink()
    secret = folder / "secret.onnx"
    (bundle / "excite.onnx").rename(secret)
    (bundle / "excite.onnx").symlink_to(secret)
    return render(folder, model="unpacked")


def _all_notes() -> bytes:
    """Sustain down, all 128 notes struck at full velocity, released under the pedal, pedal up a second later."""
    body = b"\x00\xb0\x40\x7f"
    body += b"".join(b"\x00" + bytes([0x90, note, 127]) for note in range(128))
    body += b"".join((vlq(480) if note == 0 else b"\x00") + bytes([0x80, note, 0]) for note in range(128))
    body += vlq(960) + b"\xb0\x40\x00" + vlq(480) + b"\xff\x2f\x00"
    return smf([body])


# ----------------------------------------------------------------------------------------- running and judging


@dataclass
class Outcome:
    """The verdict on one probe: "refused" / "played" (clean), or "traceback", "hang", "bad output", "wrong"."""

    name: str
    verdict: str
    detail: str
    held: bool
    code: int | None
    stderr: list[str]
    seconds: float
    peak_mb: float
    tier: str = "default"
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.verdict in ("refused", "played")


def preload() -> None:
    """Import and compile what the engine commands use, once, in the runner (the probes are forked from it)."""
    import numba  # noqa: F401

    import engine.list_cli
    import engine.play_cli
    import engine.render_cli  # noqa: F401
    from eigentone import cli
    from engine.instrument import Instrument
    from engine.loudness import LoudnessMeter
    from engine.modal_bank import ModalBank
    from engine.signal_chain import OutputGuard
    from engine.synth import Synth

    ModalBank(2, 4, 48000, 64, True).warm_up()
    # the synth's block loop (engine/synth_kernel.py): compiling it with a cold numba cache takes 30 s of CPU, over a
    # minute on a busy machine, which must not count against the first playing probe's timeout
    Synth(Instrument.load(NYLON)).prepare(48000, 64, 4)
    OutputGuard().prepare(48000)
    LoudnessMeter(48000).add(np.zeros((2, 64), np.float32))
    cli.build_parser(["render"])


def preload_torch() -> None:
    """Import torch and the training modules (no tensor work: forked children must not inherit thread pools)."""
    import torch
    import torch._dynamo  # noqa: F401  (imported by Adam's first use: 5-7 s)

    import training.train_ssm  # noqa: F401


def _snapshot(folder: Path, skip: set[str]) -> dict[str, str]:
    """sha256 of every regular file under ``folder`` (not following links), except names in ``skip``."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.name in skip:
            continue
        out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _child(probe: Probe, folder: Path, argv: list[str]) -> None:
    """In the forked process: redirect stdout/stderr, apply the probe's limits, run the CLI, exit."""
    try:
        os.chdir(folder)
        for fd, name in ((1, "stdout.txt"), (2, "stderr.txt")):
            target = os.open(folder.parent / f"{folder.name}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        if probe.file_size_limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (probe.file_size_limit, probe.file_size_limit))
        if probe.unprivileged and os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        from eigentone import cli

        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what the interpreter would print for an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_probe(probe: Probe, workspace: Path, index: int) -> Outcome:
    """Build the probe's inputs, run it in a forked child, judge the outcome."""
    folder = workspace / f"p{index:03d}"
    folder.mkdir()
    folder.chmod(0o755)
    try:
        argv = probe.make(folder)
    except Exception as exc:  # noqa: BLE001 - a broken probe is reported, not hidden
        return Outcome(probe.name, "wrong", f"probe setup failed: {exc!r}", probe.held, None, [], 0.0, 0.0, probe.tier)
    for path in folder.rglob("*"):
        if not path.is_symlink() and path.is_file():
            path.chmod(0o644)
    before = _snapshot(folder, {probe.out or ""})
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(probe, folder, argv)
    status, usage, hung = _wait(pid, started, probe)
    seconds = time.monotonic() - started
    stdout = (workspace / f"{folder.name}.stdout.txt").read_text(errors="replace")
    stderr = (workspace / f"{folder.name}.stderr.txt").read_text(errors="replace")
    code = os.waitstatus_to_exitcode(status) if status is not None else None
    peak_mb = usage.ru_maxrss / 1024 if usage is not None else 0.0
    outcome = Outcome(probe.name, "", "", probe.held, code, stderr.strip().splitlines(), seconds, peak_mb, probe.tier)
    judge(probe, outcome, folder, stdout, stderr, before, hung)
    with _suppress():
        (folder / "ro").chmod(0o755)
    return outcome


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return True


def _wait(pid: int, started: float, probe: Probe):
    hung = signalled = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, hung
        elapsed = time.monotonic() - started
        if probe.signal_after is not None and not signalled and elapsed >= probe.signal_after:
            os.kill(pid, probe.signum)
            signalled = True
        if elapsed > probe.timeout and not hung:
            os.kill(pid, signal.SIGKILL)
            hung = True
        time.sleep(0.01)


def resident_mb() -> float:
    """The runner's resident size (MB): a forked child starts sharing it."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_allowance_mb() -> float:
    """Peak memory a probe may reach: the ``memory-mb`` limit plus the runner's own resident size."""
    from eigentone import limits

    return limits.LIMITS["memory-mb"].default + resident_mb()


def judge(probe: Probe, outcome: Outcome, folder: Path, stdout: str, stderr: str, before: dict, hung: bool) -> None:
    """Fill ``outcome.verdict``/``detail``/``problems`` from what the child did."""
    problems = outcome.problems
    lines = outcome.stderr
    out = folder / probe.out if probe.out else None
    if hung:
        outcome.verdict, outcome.detail = "hang", f"killed after {probe.timeout:.0f} s"
        return
    if "Traceback (most recent call last)" in stderr or "Traceback (most recent call last)" in stdout:
        outcome.verdict = "traceback"
        outcome.detail = next((line for line in reversed(lines) if line.strip()), "")
        return
    if any(ch in CONTROL_CHARS for ch in stdout + stderr.replace("\r", "")):
        problems.append("terminal control characters in the output")
    after = _snapshot(folder, {probe.out or ""})
    changed = sorted(name for name in before if after.get(name) != before[name])
    if changed:
        problems.append(f"inputs changed or removed: {', '.join(changed)}")
    leftovers = [p.name for p in folder.rglob(".*") if p.name.startswith(".") and ".tmp" not in p.name
                 and p.name not in (".", "..")]
    if leftovers:
        problems.append(f"temporary files left: {', '.join(leftovers)}")
    if outcome.peak_mb > memory_allowance_mb():
        problems.append(f"peak memory {outcome.peak_mb:.0f} MB over the allowance {memory_allowance_mb():.0f} MB")
    if probe.extra_mb is not None and outcome.peak_mb > resident_mb() + probe.extra_mb:
        problems.append(f"peak memory {outcome.peak_mb:.0f} MB, more than {probe.extra_mb:.0f} MB over the runner's "
                        f"{resident_mb():.0f} MB")
    if probe.expect == "refused":
        if outcome.code != 2:
            problems.append(f"exit code {outcome.code}, expected 2")
        if len(lines) != 1 or not lines[0].startswith("eigentone: error: "):
            problems.append(f"{len(lines)} stderr lines, expected exactly one 'eigentone: error:' line")
        message = " ".join(lines)
        for words in (probe.says, probe.names):
            if words and words not in message:
                problems.append(f"the error does not say {words!r}")
        if out is not None and out.exists():
            problems.append("an output file was written")
        outcome.detail = lines[0] if lines else ""
        if problems:
            outcome.verdict = "bad output" if out is not None and out.exists() else "wrong"
        else:
            outcome.verdict = "refused"
        return
    if probe.expect == "terminated":
        word = "interrupted" if probe.signum == signal.SIGINT else "terminated"
        if outcome.code != 128 + probe.signum:
            problems.append(f"exit code {outcome.code}, expected {128 + probe.signum}")
        if not lines or word not in lines[-1] or not all(line.startswith("eigentone: ") for line in lines):
            problems.append(f"stderr {lines!r}, expected eigentone's lines ending with {word!r}")
        written = [p.name for p in folder.iterdir() if p.name.endswith(".wav") or p.name.startswith(".")]
        if written:
            problems.append(f"files left after the signal: {', '.join(written)}")
        outcome.detail = lines[-1] if lines else ""
        outcome.verdict = "wrong" if problems else "refused"
        return
    if outcome.code != 0:
        problems.append(f"exit code {outcome.code}, expected 0")
    noise = [line for line in lines if not line.startswith("eigentone: ")]
    if noise:
        problems.append(f"stderr lines that are not eigentone's: {noise[:2]!r}")
    outcome.detail = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    if probe.expect == "plays":
        problems.extend(check_wav(out))
    outcome.verdict = ("bad output" if any("sample" in p or "WAV" in p for p in problems) else "wrong") if problems \
        else "played"


def check_wav(path: Path | None) -> list[str]:
    """Problems with a played probe's WAV: missing, empty, non-finite, a sample or the 4x-oversampled (true)
    peak at/above full scale, permissions other than the umask's."""
    import soundfile
    from scipy import signal as sps

    if path is None or not path.is_file():
        return ["no output WAV"]
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    problems = [] if mode == 0o666 & ~umask else [f"output WAV mode {mode:o}, expected {0o666 & ~umask:o}"]
    audio, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    if not audio.size:
        return [*problems, "empty output WAV"]
    if not np.all(np.isfinite(audio)):
        problems.append("non-finite samples in the output WAV")
    peak = float(np.max(np.abs(audio)))
    if peak >= 1.0:
        problems.append(f"output WAV sample at {peak:.4f}, at or above full scale")
    true_peak = float(np.max(np.abs(sps.resample_poly(np.nan_to_num(audio).astype(np.float64), 4, 1, axis=0))))
    if true_peak >= 1.0:
        problems.append(f"output WAV true peak (4x oversampled) {20 * np.log10(true_peak):+.2f} dBTP, over full scale")
    return problems


def run_probes(probes: list[Probe], workspace: Path | None = None, log: Callable[[Outcome], None] | None = None
               ) -> list[Outcome]:
    """Run ``probes`` (engine probes first, then the torch ones) in a fresh workspace; the outcomes in order."""
    own = workspace is None
    workspace = Path(tempfile.mkdtemp(prefix="eigentone-probes-")) if own else workspace
    workspace.chmod(0o755)
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    outcomes: dict[int, Outcome] = {}
    try:
        preload()
        order = [i for i, p in enumerate(probes) if not p.torch] + [i for i, p in enumerate(probes) if p.torch]
        for position, i in enumerate(order):
            if probes[i].torch and (position == 0 or not probes[order[position - 1]].torch):
                preload_torch()
            outcomes[i] = run_probe(probes[i], workspace, i)
            if log is not None:
                log(outcomes[i])
    finally:
        if own:
            for path in workspace.rglob("*"):
                if path.is_dir() and not path.is_symlink():
                    with _suppress():
                        path.chmod(0o755)
            shutil.rmtree(workspace, ignore_errors=True)
    return [outcomes[i] for i in range(len(probes))]


COLUMNS = ("probes", "clean refusals", "safe outputs", "tracebacks", "hangs", "bad outputs", "wrong answers")
FAILURES = ("tracebacks", "hangs", "bad outputs", "wrong answers")


def totals(outcomes: list[Outcome]) -> dict[str, int]:
    """The totals table of issue 12: probes / clean refusals / safe outputs / tracebacks / hangs / bad outputs /
    wrong answers (a refusal or success with the wrong exit code, extra stderr lines, a message not naming
    the input, leftovers, changed inputs or memory over the limit)."""
    verdicts = [o.verdict for o in outcomes]
    return {"probes": len(outcomes), "clean refusals": verdicts.count("refused"),
            "safe outputs": verdicts.count("played"), "tracebacks": verdicts.count("traceback"),
            "hangs": verdicts.count("hang"), "bad outputs": verdicts.count("bad output"),
            "wrong answers": verdicts.count("wrong")}


def table(counts: dict[str, int]) -> str:
    widths = [max(len(c), 6) for c in COLUMNS]
    head = " | ".join(c.rjust(w) for c, w in zip(COLUMNS, widths))
    row = " | ".join(str(counts[c]).rjust(w) for c, w in zip(COLUMNS, widths))
    return f"{head}\n{'-' * len(head)}\n{row}"


def select(tier: str, names: list[str] | None = None) -> list[Probe]:
    """Probes of a tier ("default": the test suite's set; "all": every probe), optionally by name substring."""
    chosen = [p for p in catalogue() if tier == "all" or p.tier == tier]
    if names:
        chosen = [p for p in chosen if any(n in p.name for n in names)]
    return chosen


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.probes [--set default|all] [NAME ...]``: outcomes as JSON lines as they finish
    (for the tests)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--set", choices=("default", "all"), default="default")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    run_probes(select(args.set, args.names), log=lambda outcome: print(json.dumps(asdict(outcome)), flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
