"""Field datasets as the modal FNO sees them: fields, initial conditions, physical parameters, grids.

``field_data(ds)`` converts a ``training.data.dataset.FieldDataset`` (``eigentone simulate``) into
``FieldData``: the initial displacement/velocity is the dataset's excitation function sampled on a
refined grid (an accurate sine transform even for narrow plucks), the physical parameters the pole
network reads are the per-example columns that are physical inputs (not labels), grids as fractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eigentone.errors import EigentoneError


@dataclass
class FieldData:
    """Arrays the modal FNO trains on (float64 numpy).

    fields (E, S, P) strings or (E, S, ny, nx) plates, m; u0, v0 like fields[:, 0] (m, m/s);
    params (E, F) raw SI values named ``param_names``; grid: strings x (P,) in [0, 1], plates
    (x (nx,), y (ny,)); pickups (E, S) m at ``pickup`` (fractions (x, y)); sample_rate Hz.
    """

    kind: str
    nonlinear: bool
    sample_rate: float
    fields: np.ndarray
    u0: np.ndarray
    v0: np.ndarray
    params: np.ndarray
    param_names: list[str]
    grid: Any
    pickups: np.ndarray | None
    pickup: tuple[float, float]
    excitation: dict[str, Any]
    length: float = 1.0
    length_y: float = 1.0
    input_grid: Any = None  # grid of u0/v0 when it differs from the field grid
    mode_limit: np.ndarray | None = None  # (E,) modes the reference solver kept per example

    @property
    def examples(self) -> int:
        return self.fields.shape[0]

    def subset(self, index: np.ndarray) -> FieldData:
        exc = {k: (np.asarray(v)[index] if np.ndim(v) and len(v) == self.examples else v) for k, v in self.excitation.items()}
        return FieldData(self.kind, self.nonlinear, self.sample_rate, self.fields[index], self.u0[index], self.v0[index],
                         self.params[index], self.param_names, self.grid,
                         None if self.pickups is None else self.pickups[index], self.pickup, exc, self.length, self.length_y,
                         self.input_grid, None if self.mode_limit is None else self.mode_limit[index])


def _column(values: Any, examples: int) -> np.ndarray | None:
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        return None
    if arr.ndim == 0:
        return np.full(examples, float(arr))
    if arr.ndim == 1 and arr.shape[0] == examples:
        return arr.astype(np.float64)
    return None


NOT_MODEL_INPUTS = ("f0", "modes", "pickup_x", "pickup_y")
"""Dataset params that are labels or recording set-up, not physical inputs of the pole network."""

SHAPES = ("raised_cosine", "triangle", "gaussian")  # excitation["shape"] codes of ``eigentone simulate``


def field_data(ds: Any, refine: int = 8) -> FieldData:
    """Convert a ``training.data.dataset.FieldDataset`` into ``FieldData``.

    The initial condition is the excitation function (shape, position, width, amplitude) sampled on a
    grid ``refine`` times finer than the field grid, so its sine transform is an accurate quadrature
    even when the excitation is narrow; without an excitation description it is ``fields[:, 0]``.
    """
    fields = np.asarray(ds.fields, dtype=np.float64)
    examples = fields.shape[0]
    kind = "plate" if fields.ndim == 4 else "string"
    params: dict[str, Any] = dict(ds.params or {})
    names, cols = [], []
    for name, values in params.items():
        col = _column(values, examples)
        if col is not None and name not in NOT_MODEL_INPUTS:
            names.append(name)
            cols.append(col)
    param_matrix = np.stack(cols, axis=1) if cols else np.zeros((examples, 0))
    lx = np.asarray(params.get("L", params.get("Lx", np.ones(examples))), dtype=np.float64)
    ly = np.asarray(params.get("Ly", lx), dtype=np.float64)
    length, length_y = float(np.median(lx)), float(np.median(ly))
    grid = _grid_fractions(ds.grid, kind, fields.shape, length, length_y)
    excitation = {k: np.asarray(v) for k, v in dict(ds.excitation or {}).items()}
    if {"kind", "position", "width", "amplitude"} <= set(excitation):
        if kind == "string":
            input_grid = np.linspace(0.0, 1.0, refine * (len(grid) - 1) + 1)
        else:
            input_grid = tuple(np.linspace(0.0, 1.0, refine * (len(g) - 1) + 1) for g in grid)
        u0, v0 = excitation_fields(excitation, kind, input_grid, lx, ly)
    else:
        input_grid, u0, v0 = None, fields[:, 0], np.zeros_like(fields[:, 0])
    px = np.asarray(params.get("pickup_x", 0.9 * lx), dtype=np.float64) / lx
    py = np.asarray(params.get("pickup_y", 0.5 * ly), dtype=np.float64) / ly
    pickup = (float(np.median(px)), float(np.median(py)))
    pickups = np.asarray(ds.pickups, dtype=np.float64) if getattr(ds, "pickups", None) is not None else None
    limit = np.asarray(params["modes"], dtype=np.int64) if "modes" in params else None
    return FieldData(kind, bool(ds.nonlinear), float(ds.sample_rate), fields, u0, v0, param_matrix, names, grid,
                     pickups, pickup, excitation, length, length_y, input_grid, limit)


def excitation_fields(excitation: dict[str, np.ndarray], kind: str, grid: Any, lx: np.ndarray,
                      ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Initial displacement and velocity (E, P) or (E, ny, nx) on ``grid`` (fractions) from the
    dataset's excitation description (plucks: displacement, strikes: velocity; plates separable)."""
    from training.physics.modal import shape_profile

    count = len(np.atleast_1d(excitation["position"]))
    codes = np.asarray(excitation.get("kind", np.zeros(count)), dtype=np.float64)
    shapes = np.asarray(excitation.get("shape", np.zeros(count)), dtype=np.float64)
    shape_shape = (count, len(grid)) if kind == "string" else (count, len(grid[1]), len(grid[0]))
    u0, v0 = np.zeros(shape_shape), np.zeros(shape_shape)
    for e in range(count):
        shape = SHAPES[int(shapes[e])]
        pos, width, amp = float(excitation["position"][e]), float(excitation["width"][e]), float(excitation["amplitude"][e])
        if kind == "string":
            profile = shape_profile(shape, grid * lx[e] - pos, width)
        else:
            pos_y = float(excitation["position_y"][e])
            profile = np.outer(shape_profile(shape, grid[1] * ly[e] - pos_y, width),
                               shape_profile(shape, grid[0] * lx[e] - pos, width))  # (ny, nx)
        code = int(codes[e])
        if code == 1:  # strike
            v0[e] = amp * profile
        elif code == 0:  # pluck
            u0[e] = amp * profile
        else:
            raise EigentoneError(f"excitation kind code {code} (noise) has no closed-form initial field; "
                                 "regenerate the dataset with plucks or strikes")
    return u0, v0


def _grid_fractions(grid: Any, kind: str, shape: tuple, length: float, length_y: float) -> Any:
    if kind == "string":
        g = np.asarray(grid, dtype=np.float64).reshape(-1) if grid is not None else np.linspace(0.0, 1.0, shape[-1])
        return g / g.max() if g.max() > 0 else g
    g = None if grid is None else np.asarray(grid, dtype=np.float64)
    if g is not None and g.ndim == 3:  # (ny, nx, 2) coordinates in m
        return g[0, :, 0] / g[0, :, 0].max(), g[:, 0, 1] / g[:, 0, 1].max()
    return np.linspace(0.0, 1.0, shape[-1]), np.linspace(0.0, 1.0, shape[-2])


def load_field_data(path: str | Path) -> FieldData:
    """Load a dataset file written by ``eigentone simulate``."""
    try:
        from training.data.dataset import load_dataset
    except ImportError as exc:  # pragma: no cover - the dataset module is part of the package
        raise EigentoneError(f"cannot read {path}: training.data.dataset is missing ({exc})") from exc
    if not Path(path).exists():
        raise EigentoneError(f"{path} not found: make one with `eigentone simulate string --out {path}`")
    return field_data(load_dataset(path))
