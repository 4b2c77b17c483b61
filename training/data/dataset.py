"""The eigentone field-dataset file: solver output (or measured fields) in one self-describing HDF5 file.

Layout (format version 1)::

    /                   attrs: format = "eigentone-dataset", format_version, kind, nonlinear, sample_rate (Hz),
                               units (JSON: quantity -> unit), provenance (JSON), eigentone_version, created (UTC ISO)
    /fields             float32 string (examples, samples, points); plate (examples, samples, ny, nx); m
    /pickups            float32 (examples, samples); m
    /grid               float64 string (points,) x in m; plate (ny, nx, 2) (x, y) in m
    /params/<name>      float64 (examples,) per-example physical parameters, SI units
    /excitation/<name>  float64 (examples,) kind (0 pluck, 1 strike, 2 noise), position, width, amplitude, ...

Arrays are stored with their dtypes unchanged, so save -> load is bit-exact. Example::

    ds = load_dataset("data/strings.h5")
    ds.fields.shape      # (1000, 4000, 101)
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Self

import numpy as np

import eigentone
from eigentone.errors import EigentoneError
from eigentone.files import atomic_path

FORMAT = "eigentone-dataset"
FORMAT_VERSION = 1
EXCITATION_CODES: dict[str, int] = {"pluck": 0, "strike": 1, "noise": 2}
"""Values of ``excitation["kind"]``."""


@dataclass
class FieldDataset:
    """A set of simulated (or measured) displacement fields with their pickup signals and labels.

    kind: "string" | "plate"; nonlinear: whether the data came from a nonlinear model; sample_rate: Hz;
    fields: float32 string (examples, samples, points), plate (examples, samples, ny, nx), m;
    pickups: float32 (examples, samples), m; grid: string (points,) x in m, plate (ny, nx, 2) (x, y) in m;
    params: per-example physical parameters, each (examples,) SI; excitation: per-example kind
    (see EXCITATION_CODES), position, width, amplitude (m or m/s), ...; provenance: JSON-serialisable dict.
    """

    kind: str
    nonlinear: bool
    sample_rate: float
    fields: np.ndarray
    pickups: np.ndarray
    grid: np.ndarray
    params: dict[str, np.ndarray]
    excitation: dict[str, np.ndarray]
    provenance: dict = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    @property
    def examples(self) -> int:
        """Number of examples."""
        return int(self.fields.shape[0])


def _validate(ds: FieldDataset) -> None:
    if ds.kind not in ("string", "plate"):
        raise EigentoneError(f"dataset kind must be 'string' or 'plate', got {ds.kind!r}")
    want = 3 if ds.kind == "string" else 4
    if ds.fields.ndim != want:
        raise EigentoneError(f"{ds.kind} dataset fields must have {want} axes, got shape {ds.fields.shape}")
    if ds.pickups.shape != ds.fields.shape[:2]:
        raise EigentoneError(f"pickups shape {ds.pickups.shape} does not match fields {ds.fields.shape[:2]}")
    for group, values in (("params", ds.params), ("excitation", ds.excitation)):
        for name, value in values.items():
            if np.shape(value) != (ds.examples,):
                raise EigentoneError(f"{group}[{name!r}] must have shape ({ds.examples},), got {np.shape(value)}")


class DatasetWriter:
    """Write a dataset one example at a time (for sets too large to hold in memory), atomically.

    Use as a context manager; the file appears at ``path`` only if the block finishes without error::

        with DatasetWriter(path, "string", False, 16000, (1000, 4000, 101), grid, provenance) as w:
            for i in range(1000):
                w.write(i, field, pickup, params={...}, excitation={...})
    """

    def __init__(self, path: str | os.PathLike, kind: str, nonlinear: bool, sample_rate: float,
                 field_shape: tuple[int, ...], grid: np.ndarray, provenance: dict,
                 units: dict[str, str] | None = None, fields_dtype=np.float32, pickups_dtype=np.float32):
        self.path = path
        self._header = (kind, bool(nonlinear), float(sample_rate), tuple(field_shape), np.asarray(grid), provenance,
                        dict(units or {}), np.dtype(fields_dtype), np.dtype(pickups_dtype))
        self._atomic = None
        self._file = None

    def __enter__(self) -> Self:
        import h5py

        kind, nonlinear, sample_rate, shape, grid, provenance, units, fdtype, pdtype = self._header
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w")
        f = self._file
        f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, kind=kind, nonlinear=nonlinear,
                       sample_rate=sample_rate, eigentone_version=eigentone.__version__,
                       created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                       provenance=json.dumps(provenance), units=json.dumps(units))
        chunk = (1,) + tuple(min(s, 4096) for s in shape[1:])
        f.create_dataset("fields", shape=shape, dtype=fdtype, chunks=chunk)
        f.create_dataset("pickups", shape=shape[:2], dtype=pdtype)
        f.create_dataset("grid", data=grid)
        f.create_group("params")
        f.create_group("excitation")
        self.examples = shape[0]
        return self

    def write(self, index: int, fields: np.ndarray, pickup: np.ndarray, params: dict[str, float],
              excitation: dict[str, float]) -> None:
        """Store example ``index``: fields (samples, ...) and pickup (samples,), plus its labels."""
        f = self._file
        f["fields"][index] = fields
        f["pickups"][index] = pickup
        for group, values in (("params", params), ("excitation", excitation)):
            for name, value in values.items():
                if name not in f[group]:
                    f[group].create_dataset(name, shape=(self.examples,), dtype=np.asarray(value).dtype)
                f[group][name][index] = value

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._file.close()
        return bool(self._atomic.__exit__(exc_type, exc, tb))


def save_dataset(ds: FieldDataset, path: str | os.PathLike) -> None:
    """Write ``ds`` to an HDF5 file at ``path`` atomically (no partial file on error)."""
    _validate(ds)
    with DatasetWriter(path, ds.kind, ds.nonlinear, ds.sample_rate, ds.fields.shape, ds.grid, ds.provenance,
                       ds.units, ds.fields.dtype, ds.pickups.dtype) as writer:
        f = writer._file
        f["fields"][...] = ds.fields
        f["pickups"][...] = ds.pickups
        for group, values in (("params", ds.params), ("excitation", ds.excitation)):
            for name, value in values.items():
                f[group].create_dataset(name, data=np.asarray(value))


def load_dataset(path: str | os.PathLike) -> FieldDataset:
    """Read a dataset written by :func:`save_dataset` or ``eigentone simulate``.

    Raises EigentoneError("FILE: not an eigentone dataset (...)") for missing, foreign or damaged files.
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise EigentoneError(f"{path}: not an eigentone dataset (no such file)") from None
    except OSError as exc:
        raise EigentoneError(f"{path}: not an eigentone dataset (not an HDF5 file: {exc})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise EigentoneError(f"{path}: not an eigentone dataset (format attribute missing)")
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise EigentoneError(f"{path}: not an eigentone dataset (format version {version}, "
                                 f"this eigentone reads {FORMAT_VERSION})")
        try:
            provenance = json.loads(f.attrs["provenance"])
            ds = FieldDataset(
                kind=str(f.attrs["kind"]), nonlinear=bool(f.attrs["nonlinear"]),
                sample_rate=float(f.attrs["sample_rate"]), fields=f["fields"][...], pickups=f["pickups"][...],
                grid=f["grid"][...], params={k: v[...] for k, v in f["params"].items()},
                excitation={k: v[...] for k, v in f["excitation"].items()}, provenance=provenance,
                units=json.loads(f.attrs.get("units", "{}")),
            )
        except (KeyError, OSError, ValueError) as exc:
            raise EigentoneError(f"{path}: not an eigentone dataset (damaged: {exc})") from None
    _validate(ds)
    return ds
