"""Sampled-instrument banks as recordings: Gravis Ultrasound patches (.pat) and SoundFont 2 (.sf2).

Both formats store real recorded notes (16-bit PCM) plus playback metadata: the pitch the sample
was recorded at, and a sustain loop. A looped sample is only a recording up to its loop start
(after it the player repeats a short stretch forever), so ``BankSample.recording`` cuts there;
unlooped samples are used whole.

Formats (little-endian):

* GUS patch (Gravis UltraSound SDK "GF1PATCH110"): a 129-byte header, a 63-byte instrument header
  and a 47-byte layer header (byte 6 = number of samples), then per sample a 96-byte header
  (name[7], fractions, data size, loop start, loop end (bytes), sample rate (u16), low / high / root
  frequency (mHz), tune, balance, envelope, tremolo, vibrato, modes, ...) followed by its data.
  Modes bit 0 = 16-bit, bit 1 = unsigned, bit 2 = looping.
* SoundFont 2.01 (E-mu / Creative "SoundFont 2.01 Technical Specification", 1998): RIFF ``sfbk``
  with the sample data in ``sdta/smpl`` (16-bit) and the hydra in ``pdta``: presets (phdr/pbag/pgen)
  point to instruments (inst/ibag/igen) whose zones point to sample headers (shdr). Generators used:
  0/4 and 1/12 start/end offsets (fine/coarse), 2/45 loop-start offsets, 41 instrument, 43 key range,
  51/52 coarse/fine tune, 53 sample id, 54 sample modes (1 or 3 = looped), 58 overriding root key.

Example::

    samples = read_gus_patch("/usr/share/midi/freepats/Tone_000/024_Nylon_Guitar.pat")
    audio = samples[0].recording()         # (samples,) or (samples, 2) float32 in -1..1
    samples[0].note                        # MIDI note the sample sounds at (fractional)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class BankSample:
    """One recorded note of a sample bank.

    data : (samples,) or (samples, 2) float32 in -1..1 (stereo when a SoundFont left/right pair)
    sample_rate : Hz
    note : MIDI note number the recording sounds at (fractional; from the bank's root pitch and tuning)
    loop_start : first sample of the sustain loop, or None if the sample is not looped
    name : the bank's name for the sample
    sample_id : its index in the bank (SoundFont sample header; GUS patch: sample number), -1 if unknown
    """

    data: np.ndarray
    sample_rate: float
    note: float
    loop_start: int | None
    name: str
    sample_id: int = -1

    def recording(self) -> np.ndarray:
        """The part that is a real recording: up to the loop start when looped, else the whole sample."""
        return self.data if self.loop_start is None else self.data[: self.loop_start]


class BankError(ValueError):
    """A file is not a readable GUS patch or SoundFont."""


# ---------------------------------------------------------------- GUS patches

_GUS_HEADER = 129 + 63 + 47
_GUS_SAMPLE = struct.Struct("<7sBIIIHIIIhB")  # name, fractions, size, loop start, loop end, rate, lo, hi, root, tune, bal


def read_gus_patch(path: str | Path) -> list[BankSample]:
    """Every sample of a GUS ``.pat`` file (16-bit or 8-bit, signed or unsigned)."""
    raw = Path(path).read_bytes()
    if raw[:8] != b"GF1PATCH" or len(raw) < _GUS_HEADER:
        raise BankError(f"{path}: not a GUS patch (no GF1PATCH header)")
    count = raw[129 + 63 + 6]
    offset, samples = _GUS_HEADER, []
    for index in range(count):
        head = raw[offset : offset + 96]
        if len(head) < 96:
            raise BankError(f"{path}: truncated sample header")
        name, _, size, loop_start, _, rate, _, _, root_mhz, _, _ = _GUS_SAMPLE.unpack(head[: _GUS_SAMPLE.size])
        modes = head[55]
        offset += 96
        body = raw[offset : offset + size]
        offset += size
        wide, unsigned, looped = bool(modes & 1), bool(modes & 2), bool(modes & 4)
        dtype = ("<u2" if unsigned else "<i2") if wide else ("u1" if unsigned else "i1")
        pcm = np.frombuffer(body[: len(body) // (2 if wide else 1) * (2 if wide else 1)], dtype=dtype).astype(np.float64)
        full = 32768.0 if wide else 128.0
        data = ((pcm - full) if unsigned else pcm) / full
        root_hz = root_mhz / 1000.0
        note = 69.0 + 12.0 * math.log2(root_hz / 440.0) if root_hz > 0 else float("nan")
        loop = loop_start // (2 if wide else 1) if looped else None
        samples.append(BankSample(data.astype(np.float32), float(rate), note, loop, name.split(b"\0")[0].decode("latin-1"),
                                  index))
    return samples


# ---------------------------------------------------------------- SoundFont 2


def _chunks(raw: bytes, begin: int, end: int):
    """(id, data offset, size) of the RIFF chunks in raw[begin:end]."""
    while begin + 8 <= end:
        cid, size = raw[begin : begin + 4], struct.unpack("<I", raw[begin + 4 : begin + 8])[0]
        yield cid, begin + 8, size
        begin += 8 + size + (size & 1)


class SoundFont:
    """The presets and samples of an SF2 file (read once, whole)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        raw = self.path.read_bytes()
        if raw[:4] != b"RIFF" or raw[8:12] != b"sfbk":
            raise BankError(f"{path}: not a SoundFont 2 file (no RIFF sfbk header)")
        parts: dict[bytes, tuple[int, int]] = {}
        for cid, start, size in _chunks(raw, 12, len(raw)):
            if cid == b"LIST":
                for sub, s2, n2 in _chunks(raw, start + 4, start + size):
                    parts[sub] = (s2, n2)
        missing = {b"smpl", b"phdr", b"pbag", b"pgen", b"inst", b"ibag", b"igen", b"shdr"} - set(parts)
        if missing:
            raise BankError(f"{path}: SoundFont without {b', '.join(sorted(missing)).decode()} chunks")

        def records(name: bytes, fmt: str) -> list[tuple]:
            start, size = parts[name]
            rec = struct.Struct(fmt)
            return [rec.unpack_from(raw, start + i) for i in range(0, size - rec.size + 1, rec.size)]

        self.presets = records(b"phdr", "<20sHHHIII")  # name, program, bank, bag index, ...
        self.pbag, self.pgen = records(b"pbag", "<HH"), records(b"pgen", "<Hh")
        self.instruments = records(b"inst", "<20sH")  # name, bag index
        self.ibag, self.igen = records(b"ibag", "<HH"), records(b"igen", "<Hh")
        self.headers = records(b"shdr", "<20sIIIIIBbHH")  # name, start, end, loop start, loop end, rate, pitch, corr, link, type
        start, size = parts[b"smpl"]
        self.pcm = np.frombuffer(raw, dtype="<i2", count=size // 2, offset=start)

    @staticmethod
    def _zones(bags: list[tuple], gens: list[tuple], first: int, last: int):
        for z in range(first, last):
            yield {op: amount for op, amount in gens[bags[z][0] : bags[z + 1][0]]}

    def preset_samples(self, program: int, bank: int = 0, keys: tuple[int, int] | None = None) -> list[BankSample]:
        """The distinct samples of preset (bank, program), one per sample (left channel + right when linked).

        ``keys``: only zones whose key range overlaps [lo, hi] (drum kits keep one sound per key).
        """
        index = next((i for i, p in enumerate(self.presets[:-1]) if p[1] == program and p[2] == bank), None)
        if index is None:
            raise BankError(f"{self.path}: no preset {bank}:{program}")
        found: dict[int, BankSample] = {}
        for pzone in self._zones(self.pbag, self.pgen, self.presets[index][3], self.presets[index + 1][3]):
            if 41 not in pzone:
                continue
            inst = pzone[41]
            for zone in self._zones(self.ibag, self.igen, self.instruments[inst][1], self.instruments[inst + 1][1]):
                sid = zone.get(53)
                if sid is not None and self.headers[sid][9] & 2 and self._partner(sid) is not None:
                    sid = self._partner(sid)  # a right channel is read with its left one
                if sid is None or sid in found:
                    continue
                lo, hi = zone.get(43, 0x7F00) & 0xFF, (zone.get(43, 0x7F00) >> 8) & 0xFF
                if keys is not None and (hi < keys[0] or lo > keys[1]):
                    continue
                sample = self._sample(sid, zone)
                if sample is not None:
                    found[sid] = sample
        return list(found.values())

    def _partner(self, sid: int) -> int | None:
        """The other channel of a stereo pair: the sample link, or (links are 0 in some banks) the neighbour
        whose name differs only in (L)/(R)."""
        name, kind = self.headers[sid][0].split(b"\0")[0], self.headers[sid][9]
        want = 2 if kind & 4 else 4
        other = name.replace(b"(L)", b"(R)") if kind & 4 else name.replace(b"(R)", b"(L)")
        for cand in (self.headers[sid][8], sid + 1, sid - 1):
            if 0 <= cand < len(self.headers) and cand != sid and self.headers[cand][9] & want and (
                    cand == self.headers[sid][8] and cand != 0 or self.headers[cand][0].split(b"\0")[0] == other):
                return cand
        return None

    def _sample(self, sid: int, zone: dict[int, int]) -> BankSample | None:
        name, start, end, loop_start, _, rate, pitch, correction, _, kind = self.headers[sid]
        if kind & 0x8000:  # ROM sample: no data in the file
            return None
        start += zone.get(0, 0) + 32768 * zone.get(4, 0)
        end += zone.get(1, 0) + 32768 * zone.get(12, 0)
        loop_start += zone.get(2, 0) + 32768 * zone.get(45, 0)
        channels = [self.pcm[start:end]]
        partner = self._partner(sid) if kind & 4 else None
        if partner is not None:  # left sample with its right one
            _, r_start, r_end = self.headers[partner][:3]
            r_start += start - self.headers[sid][1]
            if r_end - r_start == end - start:
                channels.append(self.pcm[r_start : r_start + end - start])
        data = np.stack(channels, axis=-1).astype(np.float32) / 32768.0
        data = data[:, 0] if data.shape[1] == 1 else data
        root = zone.get(58, pitch if pitch <= 127 else 60)
        cents = correction + zone.get(52, 0) + 100 * zone.get(51, 0)  # playback tuning that corrects the recording
        looped = zone.get(54, 0) in (1, 3)
        return BankSample(data, float(rate), float(root) - cents / 100.0, loop_start - start if looped else None,
                          name.split(b"\0")[0].decode("latin-1"), sid)
