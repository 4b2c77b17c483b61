"""``eigentone animate RUN_DIR_or_BUNDLE DATA --example K --out anim.gif``: model vs reference field, side by side.

Strings are drawn as displacement curves u(x, t), plates as images u(x, y, t) on a shared colour
scale. From a run directory the model is the trained model (any family trained on fields) fed the
example's own initial condition and physical parameters; from a bundle (``.etone``) it is the playable instrument driven
through its ONNX graphs (excite with the example's note / velocity / position, the closed-form modal
advance of ``eigentone/contract``, then the ``field`` graph), so the animation shows what the engine
plays. Writes a GIF (imageio) or, where imageio's ffmpeg plugin is installed, an MP4.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np

from eigentone.errors import EigentoneError
from eigentone.files import atomic_path

HELP = "animate a model's displacement field next to the reference simulation (GIF or MP4)"
EXAMPLE = "eigentone animate runs/fno-string data/string.h5 --example 0 --out string.gif"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a run directory trained on fields, or an .etone bundle with a field graph")
    parser.add_argument("data", help="dataset from `eigentone simulate` (the reference)")
    parser.add_argument("--example", type=int, default=0, help="example index in DATA (default 0)")
    parser.add_argument("--out", required=True, help="output .gif or .mp4")
    parser.add_argument("--frames", type=int, default=48, help="number of frames (default 48)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of motion shown (default: 3 periods of the fundamental, at most the data)")
    parser.add_argument("--fps", type=float, default=12.0)


def model_fields_from_run(run_dir: Path, ds, example: int, samples: np.ndarray) -> np.ndarray:
    """A run's prediction of one example at sample indices ``samples``: (frames, P) or (frames, ny, nx), by its
    family's field rollout (``Family.predict_fields``)."""
    from training.run_folder import load_run

    run = load_run(run_dir)
    try:
        fields, _ = run.family.predict_fields(run.model, ds, np.array([example]))
    except NotImplementedError as exc:
        raise EigentoneError(f"{run_dir}: {exc}; animate a bundle with a field graph instead") from None
    return fields[0, samples]


def _bundle_controls(ds, example: int, manifest: dict) -> np.ndarray:
    """(1, 4) engine controls for a dataset example: note from f0, velocity from the excitation amplitude."""
    from eigentone.contract.reference import hz_to_midi

    params = {k: float(np.asarray(v)[example]) for k, v in ds.params.items()}
    exc = {k: float(np.asarray(v)[example]) for k, v in ds.excitation.items()}
    instrument = manifest.get("instrument", {})
    f0 = params.get("f0", 220.0)
    velocity = exc.get("amplitude", 1.0) / float(instrument.get("amplitude", exc.get("amplitude", 1.0)))
    lx = params.get("L", params.get("Lx", 1.0))
    ly = params.get("Ly", lx)
    return np.array([[hz_to_midi(f0), np.clip(velocity, 0.0, 1.0), exc.get("position", 0.5 * lx) / lx,
                      exc.get("position_y", 0.5 * ly) / ly]], dtype=np.float32)


def model_fields_from_bundle(bundle: Path, ds, example: int, samples: np.ndarray) -> np.ndarray:
    """The bundle's field at sample indices ``samples`` for an example's note/velocity/position."""
    import onnxruntime as ort

    from eigentone.contract.reference import ModalVoices, discrete_poles, modulated_omega

    with zipfile.ZipFile(bundle) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        if "field" not in manifest["graphs"]:
            raise EigentoneError(f"{bundle} has no field graph; animate needs a modal FNO (or other) bundle with one")
        sessions = {role: ort.InferenceSession(archive.read(spec["file"]), providers=["CPUExecutionProvider"])
                    for role, spec in manifest["graphs"].items() if role in ("excite", "field")}
    excite = sessions["excite"]
    outputs = dict(zip([o.name for o in excite.get_outputs()],
                       excite.run(None, {"controls": _bundle_controls(ds, example, manifest)})))
    voices = ModalVoices.from_graph_outputs(outputs)
    fs = float(ds.sample_rate)
    n = int(samples.max()) + 1
    z = voices.z0[0].copy()  # (N,) complex
    states = np.zeros((n, z.size), dtype=np.complex128)
    block = 16
    for start in range(0, n, block):  # the contract's block-rate advance (pole modulation once per block)
        omega = voices.omega[0]
        if voices.mod_alpha is not None:
            omega = modulated_omega(voices.omega[:1], z[None], voices.mod_alpha[:1], voices.mod_beta[:1])[0]
        pole = discrete_poles(voices.sigma[0], omega, fs)
        k = np.arange(min(block, n - start))
        states[start : start + k.size] = z[None, :] * pole[None, :] ** k[:, None]
        z = z * pole ** k.size
    z_pairs = np.stack([states[samples].real, states[samples].imag], -1).astype(np.float32)  # (frames, N, 2)
    field = sessions["field"]
    return np.asarray(field.run(None, {field.get_inputs()[0].name: z_pairs})[0], dtype=np.float64)


def _match_grid(model_u: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Resample the model's field onto the reference grid when the sizes differ (linear interpolation)."""
    if model_u.shape[1:] == ref.shape[1:]:
        return model_u
    if ref.ndim == 2:
        xm, xr = np.linspace(0, 1, model_u.shape[1]), np.linspace(0, 1, ref.shape[1])
        return np.stack([np.interp(xr, xm, frame) for frame in model_u])
    from scipy.ndimage import zoom

    factors = (1.0, ref.shape[1] / model_u.shape[1], ref.shape[2] / model_u.shape[2])
    return zoom(model_u, factors, order=1)


def render_frames(model_u: np.ndarray, ref: np.ndarray, times: np.ndarray, title: str) -> list[np.ndarray]:
    """RGB frames (H, W, 3) uint8: reference | model, shared scale, time in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = float(max(np.abs(ref).max(), np.abs(model_u).max(), 1e-30))
    frames = []
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=70)
    for i, t in enumerate(times):
        for ax, u, name in ((axes[0], ref[i], "reference (solver)"), (axes[1], model_u[i], "model")):
            ax.clear()
            if u.ndim == 1:
                ax.plot(np.linspace(0, 1, u.size), u / scale, lw=2)
                ax.set_ylim(-1.1, 1.1)
                ax.set_xlabel("x / L")
            else:
                ax.imshow(u / scale, vmin=-1, vmax=1, cmap="RdBu_r", origin="lower", aspect="auto")
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(name, fontsize=9)
        fig.suptitle(f"{title}   t = {1000 * t:.2f} ms", fontsize=10)
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return frames


def animate(model_path: str | Path, data_path: str | Path, out: str | Path, example: int = 0, frames: int = 48,
            duration: float | None = None, fps: float = 12.0) -> int:
    """Write the animation; returns the number of frames."""
    import imageio.v2 as imageio

    from training.data.dataset import load_dataset

    model_path, out = Path(model_path), Path(out)
    if not Path(data_path).exists():
        raise EigentoneError(f"{data_path} not found: make one with `eigentone simulate string --out {data_path}`")
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise EigentoneError(f"{out}: choose a .gif or .mp4 output")
    ds = load_dataset(data_path)
    if not 0 <= example < ds.examples:
        raise EigentoneError(f"--example {example} is outside {data_path} (0..{ds.examples - 1})")
    fs = float(ds.sample_rate)
    n_total = ds.fields.shape[1]
    if duration is None:
        f0 = float(np.asarray(ds.params["f0"])[example]) if "f0" in ds.params else 100.0
        duration = 3.0 / f0
    last = min(n_total - 1, max(1, round(duration * fs)))
    samples = np.unique(np.linspace(0, last, max(2, frames)).round().astype(int))
    ref = np.asarray(ds.fields[example], dtype=np.float64)[samples]
    if model_path.is_dir():
        model_u = model_fields_from_run(model_path, ds, example, samples)
        label = f"modal FNO run {model_path.name}"
    elif model_path.is_file():
        model_u = model_fields_from_bundle(model_path, ds, example, samples)
        label = f"bundle {model_path.name}"
    else:
        raise EigentoneError(f"{model_path}: neither a run directory nor a bundle file")
    model_u = _match_grid(model_u, ref)
    images = render_frames(model_u, ref, samples / fs, f"{ds.kind} example {example}: {label}")
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".gif":
            imageio.mimsave(tmp, images, format="GIF", duration=1000.0 / fps, loop=0)
        else:
            try:
                imageio.mimsave(tmp, images, format="FFMPEG", fps=fps)
            except (ImportError, ValueError, RuntimeError) as exc:
                raise EigentoneError(f"cannot write {out}: no ffmpeg plugin for imageio ({exc}); use a .gif") from None
    return len(images)


def run(args: argparse.Namespace) -> int:
    count = animate(args.model, args.data, args.out, args.example, args.frames, args.duration, args.fps)
    print(f"wrote {args.out} ({count} frames)")
    return 0
