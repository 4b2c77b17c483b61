"""A 30 s phrase of a real-recording instrument, played by the engine beside the recordings themselves.

    python -m training.recorded_demo --out runs/recorded-demo      # the shipped fluid-nylon-guitar

Plays every recorded note of the instrument once, lowest first, one every ``seconds / notes`` s (velocity
100, no note-offs: each note rings on under the next), through the engine's ``Synth`` from the bundle
(default: the shipped ``assets/recorded/INSTRUMENT.etone``), and overlays the recordings at the same onsets.
The recordings come from a built development set (``--devset``) or, by default, are extracted from the
instrument's sample bank into a temporary folder (``training.data.devset.build`` for this instrument only).
Writes OUT/render.wav, OUT/recordings.wav (each peak-normalised to -1 dBFS) and OUT/spectrograms.png (the
two log-magnitude spectrograms one above the other, same scale): all three are made before any is written,
and each is written through a temporary file (no half-written output).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from eigentone.errors import EigentoneError
from eigentone.files import atomic_path

SECONDS = 30.0
BLOCK = 256


def phrase(bundle: Path, notes: list[float], sample_rate: float, seconds: float = SECONDS) -> np.ndarray:
    """(samples,) float64: the engine playing ``notes`` (MIDI, rounded to keys) one after another over ``seconds``."""
    from engine.instrument import Instrument
    from engine.synth import Synth

    instrument = Instrument.load(bundle)
    synth = Synth(instrument, limiter=False)
    synth.prepare(sample_rate, BLOCK, 16)
    total = int(seconds * sample_rate) // BLOCK * BLOCK
    step = total // len(notes)
    onsets = {i * step: round(n) for i, n in enumerate(notes)}
    out = np.empty(total)
    for begin in range(0, total, BLOCK):
        events = [(at - begin, 0x90, key, 100) for at, key in onsets.items() if begin <= at < begin + BLOCK]
        block = np.asarray(synth.process(events, BLOCK), np.float64)
        out[begin : begin + BLOCK] = block.reshape(BLOCK, -1).mean(axis=1)  # mono, whatever the channel count
    return out


def overlay(recordings: list[np.ndarray], total: int) -> np.ndarray:
    """(total,) the recordings added at the same onsets as :func:`phrase` (one every total // len samples)."""
    step = total // BLOCK * BLOCK // len(recordings)
    out = np.zeros(total)
    for i, x in enumerate(recordings):
        part = x[: total - i * step]
        out[i * step : i * step + part.size] += part
    return out


def spectrograms(top: np.ndarray, bottom: np.ndarray, sample_rate: float, titles: tuple[str, str]) -> bytes:
    """Two log-magnitude spectrograms (2048-sample Hann, hop 512, dB re each one's peak, -90..0): one PNG's bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import signal as sps

    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True, sharey=True)
    for ax, x, title in zip(axes, (top, bottom), titles, strict=True):
        f, t, z = sps.stft(x, sample_rate, nperseg=2048, noverlap=2048 - 512)
        db = 20 * np.log10(np.abs(z) / np.abs(z).max() + 1e-12)
        mesh = ax.pcolormesh(t, f, db, vmin=-90, vmax=0, shading="auto", cmap="magma")
        ax.set_yscale("symlog", linthresh=200)
        ax.set_ylim(40, sample_rate / 2)
        ax.set_ylabel("Hz")
        ax.set_title(title)
    axes[-1].set_xlabel("s")
    fig.colorbar(mesh, ax=axes, label="dB")
    png = io.BytesIO()
    fig.savefig(png, dpi=90, format="png")
    plt.close(fig)
    return png.getvalue()


def instrument_recordings(devset: str | None, instrument: str) -> list:
    """The instrument's recordings (``training.data.audio.Recording``), lowest note first: from the built set at
    ``devset``, or extracted from its sample bank into a temporary folder when ``devset`` is None."""
    from training.data.audio import load_folder
    from training.data.devset import extract_instrument, load_index

    if devset is not None:
        files = [f for f in load_index(devset) if f["instrument"] == instrument]
        if not files:
            raise EigentoneError(f"{devset}: no instrument named {instrument!r} in the development set")
        return sorted(load_folder(Path(devset) / Path(files[0]["file"]).parent), key=lambda r: r.note)
    work = Path(tempfile.mkdtemp(prefix="eigentone-demo-"))
    try:
        return sorted(load_folder(extract_instrument(instrument, work)), key=lambda r: r.note)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recorded_demo", description=__doc__.split("\n")[0])
    parser.add_argument("--devset", default=None, help="folder written by `eigentone devset build` (default: "
                        "extract the instrument's recordings from its sample bank)")
    parser.add_argument("--instrument", default="fluid-nylon-guitar")
    parser.add_argument("--bundle", default=None, help="the instrument's .etone bundle (default: the shipped "
                        "assets/recorded/INSTRUMENT.etone)")
    parser.add_argument("--out", default="runs/recorded-demo", help="output folder")
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"length of the phrase (default {SECONDS:g})")
    args = parser.parse_args(argv)

    import assets
    from engine.render import write_wav

    bundle = Path(args.bundle) if args.bundle else assets.path("recorded") / f"{args.instrument}.etone"
    try:
        recs = instrument_recordings(args.devset, args.instrument)
        fs = recs[0].sample_rate
        render = phrase(bundle, [r.note for r in recs], fs, args.seconds)
        reference = overlay([r.audio.astype(np.float64) for r in recs], render.size)
        png = spectrograms(reference, render, fs, (
            f"{args.instrument}: the {len(recs)} recordings, one every {args.seconds / len(recs):.1f} s",
            f"{bundle.name} played by the engine, same keys and onsets"))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, x in (("render", render), ("recordings", reference)):
            write_wav(out / f"{name}.wav", (0.89 * x / max(np.abs(x).max(), 1e-12)).astype(np.float32)[None], fs,
                      "pcm16")
        with atomic_path(out / "spectrograms.png") as tmp:
            Path(tmp).write_bytes(png)
    except (EigentoneError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}/render.wav, recordings.wav, spectrograms.png ({render.size / fs:.1f} s at {fs:g} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
