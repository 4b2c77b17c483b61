"""What `eigentone train FAMILY DATA` learns from, loaded once and split once for every family.

DATA is one of:

* ``field``      a ``.h5`` dataset from ``eigentone simulate`` (fields, pickups, physical labels);
* ``recording``  one WAV/FLAC note (labels from its file name, or none);
* ``recordings`` a folder of labelled WAV/FLAC notes (``labels.csv``: file, note, velocity, position; or
  file names like ``C#4_v100.wav``), one shared gain so velocity differences survive.

Example::

    data = load_training_data("runs/notes", hold_out=4)
    data.kind, data.sample_rate, data.split["test"]      # ("recordings", 32000.0, array([...]))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eigentone.errors import EigentoneError
from training.data.audio import AUDIO_SUFFIXES, Recording, load_folder, load_recording
from training.data.splits import Split, hold_out_notes, split_indices

KINDS = ("field", "recording", "recordings")


@dataclass
class TrainingData:
    """Loaded training data and its split (indices into ``dataset`` examples or ``recordings``).

    dataset: a ``training.data.dataset.FieldDataset`` (kind "field"), else None;
    recordings: the labelled notes (kinds "recording" and "recordings"), else None;
    views: derived arrays a family computes once per data set (e.g. the modal FNO's ``FieldData``).
    """

    path: Path
    kind: str
    sample_rate: float
    split: Split
    dataset: object | None = None
    recordings: list[Recording] | None = None
    views: dict = field(default_factory=dict)

    @property
    def examples(self) -> int:
        return self.dataset.examples if self.dataset is not None else len(self.recordings)

    def subset(self, part: str) -> list[Recording]:
        """The recordings of one split part ("train", "val", "test")."""
        return [self.recordings[i] for i in self.split[part]]


def data_kind(path: Path) -> str:
    """"field", "recording" or "recordings" from the path; EigentoneError naming it otherwise."""
    if path.is_dir():
        return "recordings"
    if not path.exists():
        raise EigentoneError(f"{path}: no such file or folder")
    if path.suffix.lower() in (".h5", ".hdf5"):
        return "field"
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return "recording"
    raise EigentoneError(f"{path}: expected a .h5 dataset, a WAV/FLAC file or a folder of recordings")


def load_training_data(path: str | Path, *, seed: int = 0, hold_out: int = 0) -> TrainingData:
    """Load DATA (see the module doc) and split it: field datasets 80/10/10 by ``seed``; recordings all
    trained on unless ``hold_out`` notes are held out as the test set."""
    path = Path(path)
    kind = data_kind(path)
    if kind == "field":
        from training.data.dataset import load_dataset

        return from_dataset(load_dataset(path), path, seed=seed)
    recs = load_folder(path) if kind == "recordings" else [load_recording(path)]
    return from_recordings(recs, path, kind=kind, hold_out=hold_out)


def from_dataset(dataset, path: str | Path = "", *, seed: int = 0) -> TrainingData:
    """TrainingData of an in-memory ``FieldDataset`` (e.g. a benchmark's decimated copy)."""
    return TrainingData(Path(path), "field", float(dataset.sample_rate), split_indices(dataset.examples, seed),
                        dataset=dataset)


def from_recordings(recs: list[Recording], path: str | Path = "", *, kind: str = "recordings",
                    hold_out: int = 0) -> TrainingData:
    """TrainingData of loaded recordings (one sample rate), ``hold_out`` notes held out as the test set."""
    if hold_out and kind == "recordings":
        try:
            split = hold_out_notes([r.note for r in recs], hold_out)
        except ValueError as exc:
            raise EigentoneError(f"{path}: --hold-out: {exc}") from None
    else:
        split = hold_out_notes(np.zeros(len(recs)), 0)
    return TrainingData(Path(path), kind, float(recs[0].sample_rate), split, recordings=recs)
