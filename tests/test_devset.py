"""Dev-set building blocks: GUS patch and SoundFont readers on tiny banks written here, the split table."""

import json
import struct

import numpy as np
import pytest

from training.data import devset
from training.data.soundbanks import BankError, SoundFont, read_gus_patch


def gus_patch(samples: list[tuple[np.ndarray, int, float, int | None]]) -> bytes:
    """A GF1PATCH110 file of 16-bit signed samples (data int16, rate, root Hz, loop start sample or None)."""
    head = b"GF1PATCH110\0ID#000002\0".ljust(129, b"\0")
    inst = b"\0" * 63
    layer = bytearray(47)
    layer[6] = len(samples)
    out = bytearray(head + inst + bytes(layer))
    for data, rate, root, loop in samples:
        size = data.size * 2
        loop_start = 2 * (loop or 0)
        hdr = struct.pack("<7sBIIIHIIIhB", b"test", 0, size, loop_start, size, rate, 0, 0, int(root * 1000), 0, 7)
        hdr += b"\0" * 18  # envelope, tremolo, vibrato
        hdr += bytes([0x01 | (0x04 if loop is not None else 0)])  # 16-bit, looped
        out += hdr.ljust(96, b"\0") + data.astype("<i2").tobytes()
    return bytes(out)


def test_gus_patch_sample_is_cut_at_its_loop_start_and_labelled_by_root_pitch(tmp_path):
    ramp = (np.arange(1000) * 20).astype(np.int16)
    path = tmp_path / "t.pat"
    path.write_bytes(gus_patch([(ramp, 22050, 440.0, 600), (ramp[:300], 44100, 261.6256, None)]))
    first, second = read_gus_patch(path)
    assert first.recording().shape == (600,) and first.sample_rate == 22050
    assert first.note == pytest.approx(69.0)
    assert first.recording()[10] == pytest.approx(200 / 32768)
    assert second.recording().shape == (300,) and second.note == pytest.approx(60.0, abs=1e-4)
    with pytest.raises(BankError, match="GUS"):
        (tmp_path / "bad.pat").write_bytes(b"nope" * 100)
        read_gus_patch(tmp_path / "bad.pat")


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def soundfont(pcm: np.ndarray, headers: list[tuple], zones: list[dict[int, int]], program: int = 24) -> bytes:
    """An SF2 with one preset -> one instrument whose zones are ``zones`` (generator dicts)."""
    phdr = struct.pack("<20sHHHIII", b"p", program, 0, 0, 0, 0, 0) + struct.pack("<20sHHHIII", b"EOP", 0, 0, 1, 0, 0, 0)
    pbag = struct.pack("<HH", 0, 0) + struct.pack("<HH", 1, 0)
    pgen = struct.pack("<Hh", 41, 0) + struct.pack("<Hh", 0, 0)
    inst = struct.pack("<20sH", b"i", 0) + struct.pack("<20sH", b"EOI", len(zones))
    ibag, igen = b"", b""
    count = 0
    for zone in zones:
        ibag += struct.pack("<HH", count, 0)
        for op, amount in zone.items():
            igen += struct.pack("<Hh", op, amount)
            count += 1
    ibag += struct.pack("<HH", count, 0)
    igen += struct.pack("<Hh", 0, 0)
    shdr = b"".join(struct.pack("<20sIIIIIBbHH", *h) for h in headers) + struct.pack("<20sIIIIIBbHH", b"EOS", 0, 0, 0, 0,
                                                                                     0, 0, 0, 0, 0)
    pdta = b"pdta" + b"".join(_chunk(c, b) for c, b in ((b"phdr", phdr), (b"pbag", pbag), (b"pmod", b""), (b"pgen", pgen),
                                                          (b"inst", inst), (b"ibag", ibag), (b"imod", b""),
                                                          (b"igen", igen), (b"shdr", shdr)))
    sdta = b"sdta" + _chunk(b"smpl", pcm.astype("<i2").tobytes())
    body = b"sfbk" + _chunk(b"LIST", b"INFO") + _chunk(b"LIST", sdta) + _chunk(b"LIST", pdta)
    return _chunk(b"RIFF", body)


def test_soundfont_pairs_left_and_right_and_applies_loop_and_tuning(tmp_path):
    pcm = np.concatenate([np.full(500, 1000), np.full(500, -1000), np.full(400, 300)]).astype(np.int16)
    headers = [(b"Guit(L)", 0, 500, 200, 480, 44100, 45, 10, 0, 4),  # link 0 as in FluidR3: paired by name
               (b"Guit(R)", 500, 1000, 700, 980, 44100, 45, 10, 0, 2),
               (b"Mono", 1000, 1400, 1000, 1400, 32000, 60, 0, 0, 1)]
    zones = [{43: 0 | (50 << 8), 54: 1, 53: 0}, {43: 0 | (50 << 8), 54: 1, 53: 1}, {43: 51 | (127 << 8), 58: 62, 53: 2}]
    path = tmp_path / "t.sf2"
    path.write_bytes(soundfont(pcm, headers, zones))
    samples = SoundFont(path).preset_samples(24)
    assert len(samples) == 2
    stereo, mono = samples
    assert stereo.recording().shape == (200, 2)  # looped: cut at the loop start; left + right
    assert stereo.recording()[0, 0] > 0 > stereo.recording()[0, 1]
    assert stereo.note == pytest.approx(45 - 0.1)  # a +10 cent playback correction: recorded 10 cents flat
    assert mono.loop_start is None and mono.recording().shape == (400,) and mono.note == 62.0  # overriding root key
    assert (stereo.sample_id, mono.sample_id) == (0, 2)  # the sample header each came from (left one of a pair)
    assert [s.note for s in SoundFont(path).preset_samples(24, keys=(55, 60))] == [62.0]
    with pytest.raises(BankError, match="no preset"):
        SoundFont(path).preset_samples(3)


def test_split_is_fixed_by_instrument_and_every_group_has_both_parts():
    names = [i.name for i in devset.INSTRUMENTS]
    assert len(names) == len(set(names))
    for group in devset.GROUPS:
        parts = {i.part for i in devset.INSTRUMENTS if i.group == group}
        assert parts == {"tune", "holdout"}, group
    assert devset.note_file_name(66) == "Fs4" and devset.note_file_name(60.2) == "C4"


def test_missing_packages_are_one_line_error_without_root(monkeypatch, tmp_path):
    monkeypatch.setattr(devset, "FREEPATS", tmp_path / "none")
    with pytest.raises(devset.EigentoneError, match="apt-get install -y freepats"):
        devset.ensure_packages(install=False)


def plucked(note: float, rate: int, seed: int, seconds: float = 0.4) -> np.ndarray:
    """A synthetic plucked recording: 12 stiff-string partials with random phases and a decaying noise burst
    (another seed: another string and pluck)."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(1e-4, 1e-3)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 440.0 * 2.0 ** ((note - 69.0) / 12.0)
    x = sum(np.exp(-(2.0 + 0.5 * k) * t) * np.sin(2 * np.pi * f0 * k * np.sqrt(1 + b * k * k) * t + rng.uniform(0, 6.3)) / k
            for k in range(1, 13))
    return (0.5 * x + 0.3 * rng.standard_normal(t.size) * np.exp(-t / 0.02)).astype(np.float32) / 4.0


def repitched(x: np.ndarray, semitones: float) -> np.ndarray:
    """x played ``semitones`` higher at the same rate (what a sound designer's pitch shift of a sample does)."""
    src = np.arange(int(x.size / 2.0 ** (semitones / 12.0))) * 2.0 ** (semitones / 12.0)
    return np.interp(src, np.arange(x.size), x).astype(np.float32)


def test_repitched_copies_are_dropped_and_chains_lead_back_to_the_kept_sample():
    from training.data.soundbanks import BankSample

    rate = 22050
    original = plucked(60, rate, seed=1)
    copy = repitched(original, 6.0)
    samples = [BankSample(original, rate, 60.0, None, "C4", 0),
               BankSample(copy, rate, 66.0, None, "F#4 (C4 repitched)", 1),
               BankSample(plucked(67, rate, seed=2), rate, 67.0, None, "G4", 2),  # another recording
               BankSample(repitched(copy, 9.0), rate, 75.0, None, "D#5 (F#4 repitched)", 3)]  # 15 semitones from C4
    assert devset.repitch_similarity(samples[0], samples[1]) > 0.97
    assert devset.repitch_similarity(samples[0], samples[2]) < devset.COPY_SIMILARITY - 0.2
    kept, dropped = devset.drop_repitched(samples)
    assert [s.sample_id for s in kept] == [0, 2]
    assert [(s.sample_id, origin.sample_id) for s, origin, _ in dropped] == [(1, 0), (3, 0)]


def test_build_names_each_bank_sample_and_lists_the_dropped_copies(monkeypatch, tmp_path):
    rate = 22050
    original = (plucked(60, rate, seed=3) * 32767).astype(np.int16)
    other = (plucked(67, rate, seed=4) * 32767).astype(np.int16)
    copy = (repitched(plucked(60, rate, seed=3), 4.0) * 32767).astype(np.int16)
    hz = [440.0 * 2.0 ** ((n - 69) / 12) for n in (60, 64, 67)]
    bank = tmp_path / "banks"
    (bank / "Tone_000").mkdir(parents=True)
    (bank / "Tone_000/024_Test.pat").write_bytes(gus_patch([(original, rate, hz[0], None), (copy, rate, hz[1], None),
                                                            (other, rate, hz[2], None)]))
    monkeypatch.setattr(devset, "FREEPATS", bank)
    monkeypatch.setattr(devset, "ensure_packages", lambda install=True: None)
    inst = devset.DevInstrument("test-guitar", "plucked", "freepats", "Tone_000/024_Test.pat", "tune")
    files = devset.build(tmp_path / "set", instruments=(inst,))
    assert [(f["note"], f["sample"]) for f in files] == [(60.0, "Tone_000/024_Test.pat#0"), (67.0, "Tone_000/024_Test.pat#2")]
    index = json.loads((tmp_path / "set/devset.json").read_text())
    assert [(d["note"], d["sample"], d["copy_of"]) for d in index["dropped"]] == [
        (64.0, "Tone_000/024_Test.pat#1", "Tone_000/024_Test.pat#0")]
    assert sorted(p.name for p in (tmp_path / "set/plucked/test-guitar").iterdir()) == ["C4.flac", "G4.flac", "labels.csv"]


def test_a_copy_of_an_earlier_instruments_sample_is_dropped_so_the_holdout_part_holds_no_tune_take(monkeypatch, tmp_path):
    rate = 22050
    nylon = [(plucked(n, rate, seed=10 + n) * 32767).astype(np.int16) for n in (60, 67)]
    steel_own = (plucked(62, rate, seed=20) * 32767).astype(np.int16)
    steel_copy = (repitched(plucked(67, rate, seed=77), 5.0) * 32767).astype(np.int16)  # nylon's G4 played as C5
    hz = {n: 440.0 * 2.0 ** ((n - 69) / 12) for n in (60, 62, 67, 72)}
    bank = tmp_path / "banks"
    (bank / "Tone_000").mkdir(parents=True)
    (bank / "Tone_000/024_Nylon.pat").write_bytes(gus_patch([(nylon[0], rate, hz[60], None), (nylon[1], rate, hz[67], None)]))
    (bank / "Tone_000/025_Steel.pat").write_bytes(gus_patch([(steel_own, rate, hz[62], None), (steel_copy, rate, hz[72], None)]))
    monkeypatch.setattr(devset, "FREEPATS", bank)
    monkeypatch.setattr(devset, "ensure_packages", lambda install=True: None)
    insts = (devset.DevInstrument("nylon", "plucked", "freepats", "Tone_000/024_Nylon.pat", "tune"),
             devset.DevInstrument("steel", "plucked", "freepats", "Tone_000/025_Steel.pat", "holdout"))
    files = devset.build(tmp_path / "set", instruments=insts)
    assert [(f["instrument"], f["note"]) for f in files] == [("nylon", 60.0), ("nylon", 67.0), ("steel", 62.0)]
    index = json.loads((tmp_path / "set/devset.json").read_text())
    assert [(d["instrument"], d["note"], d["copy_of"], d["copy_of_instrument"]) for d in index["dropped"]] == [
        ("steel", 72.0, "Tone_000/024_Nylon.pat#1", "nylon")]
    assert index["dropped"][0]["similarity"] >= devset.COPY_SIMILARITY


def test_copy_elsewhere_needs_the_match_both_ways_and_within_an_octave():
    from training.data.soundbanks import BankSample

    rate = 22050
    original = BankSample(plucked(60, rate, seed=5), rate, 60.0, None, "C4", 0)
    copy = BankSample(repitched(original.data, 7.0), rate, 67.0, None, "G4 (C4 repitched)", 1)
    far_copy = BankSample(repitched(original.data, 13.0), rate, 73.0, None, "C#5 (C4 repitched)", 2)
    other = BankSample(plucked(67, rate, seed=6), rate, 67.0, None, "G4", 3)
    earlier = [(original, "nylon", "bank-a")]
    found = devset.copy_elsewhere(copy, earlier)
    assert found is not None and found[:3] == (original, "nylon", "bank-a") and found[3] >= devset.COPY_SIMILARITY
    assert devset.copy_elsewhere(other, earlier) is None
    assert devset.copy_elsewhere(far_copy, earlier) is None


def test_copy_elsewhere_compares_the_band_both_samples_hold():
    """A copy made a major sixth up by a band-limited resampler holds nothing above 3/5 of Nyquist of the original;
    played back down it must still match the original's pluck, whose 50 ms noise burst fills that top band."""
    from scipy.signal import resample_poly

    from training.data.soundbanks import BankSample

    rate = 22050
    pluck = plucked(60, rate, seed=5)
    t = np.arange(pluck.size) / rate
    noisy = (pluck + np.random.default_rng(9).standard_normal(t.size) * np.exp(-t / 0.05) / 4).astype(np.float32)
    original = BankSample(noisy, rate, 60.0, None, "C4", 0)
    copy = BankSample(resample_poly(noisy, 3, 5).astype(np.float32), rate, 60.0 + 12.0 * np.log2(5 / 3), None, "A4", 1)
    found = devset.copy_elsewhere(copy, [(original, "nylon", "bank-a")])
    assert found is not None and found[3] > 0.95


def test_copy_elsewhere_finds_one_channel_of_a_stereo_take():
    """Another bank kept the left channel of a stereo take (each channel with its own microphone noise): the mix
    of both channels is not that copy, the left channel is."""
    from training.data.soundbanks import BankSample

    rate = 22050
    pluck = plucked(60, rate, seed=7)
    t = np.arange(pluck.size) / rate
    noise = np.random.default_rng(11).standard_normal((t.size, 2)) * np.exp(-t / 0.05)[:, None] / 3
    stereo = (pluck[:, None] + noise).astype(np.float32)
    take = BankSample(stereo, rate, 60.0, None, "C4 (L+R)", 0)
    left = BankSample(repitched(stereo[:, 0], 3.0), rate, 63.0, None, "D#4 (left channel, repitched)", 1)
    mix = BankSample(stereo.mean(axis=1), rate, 60.0, None, "C4 mix", 2)
    assert devset.repitch_similarity(mix, left) < devset.COPY_SIMILARITY  # what comparing the mix would miss
    found = devset.copy_elsewhere(left, [(take, "fluid-harp", "bank-a")])
    assert found is not None and found[0] is take and found[3] >= devset.COPY_SIMILARITY
