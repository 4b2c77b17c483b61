"""`eigentone export RUN_DIR --out NAME.etone`: any family's trained run -> a validated bundle.

Family hook (how the Koopman, modal FNO and diagonal SSM families plug in)
-------------------------------------------------------------------------
RUN_DIR/config.json names the family: ``{"family": "koopman", ...}``. The module
``training.models.<family>`` must define::

    def build_from_run(run_dir: Path) -> tuple[
        nn.Module,              # excite: forward(controls (V, 4)) -> {"sigma", "omega", "z0", "c"
                                #         [, "mod_alpha", "mod_beta"]} as in eigentone/contract
        nn.Module | None,       # readout: forward(z (V, N, 2)) -> c (V, N, 2), or None
        nn.Module | None,       # field:   forward(z (V, N, 2)) -> u (V, points) or (V, ny, nx), or None
        dict,                   # manifest fields: modes, note_range, trained_sample_rate, and optionally
                                #   description, modulation, release_time, training, metrics
    ]

in eval mode with its weights loaded (``torch.load(..., weights_only=True)``). Every graph is exported
with a dynamic ``voices`` axis, checked against onnxruntime (``export/parity.py``) and packed by
``export/bundle_writer.py`` (sha256 per graph). A run dir without RUN_DIR/model.pt (training not
finished) is refused with one line; nothing is written unless every check passes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from eigentone.errors import EigentoneError

HELP = "export a trained run (any family) to an .etone bundle, with a torch-vs-onnxruntime parity check"
EXAMPLE = "eigentone export runs/nylon --out nylon.etone --name nylon-b3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished training run (RUN_DIR/config.json + RUN_DIR/model.pt)")
    parser.add_argument("--out", required=True, help="bundle to write, NAME.etone")
    parser.add_argument("--name", help="instrument name (default: the bundle's file name)")
    parser.add_argument("--description", help="one line shown by `eigentone list` (default: the family's own)")


def load_family(run_dir: Path):
    """(family name, build_from_run result) of a finished run dir; EigentoneError with one line otherwise."""
    config_path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise EigentoneError(f"{run_dir}: no such run directory")
    if not config_path.is_file():
        raise EigentoneError(f"{run_dir}: not a training run (no config.json)")
    try:
        family = json.loads(config_path.read_text())["family"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise EigentoneError(f"{config_path}: unreadable or without a \"family\" entry") from None
    if not (run_dir / "model.pt").is_file():
        raise EigentoneError(f"{run_dir}: no finished model (model.pt missing); finish training first (rerun the "
                             "train command to resume)")
    try:
        module = importlib.import_module(f"training.models.{family}")
    except ModuleNotFoundError:
        raise EigentoneError(f"{config_path}: unknown model family {family!r}") from None
    if not hasattr(module, "build_from_run"):
        raise EigentoneError(f"training.models.{family} has no build_from_run(run_dir) export hook")
    try:
        return family, module.build_from_run(run_dir)
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise EigentoneError(f"{run_dir}: cannot rebuild the model: {str(exc).splitlines()[0]}") from None


def export_run(run_dir: str | Path, out: str | Path, name: str | None = None, verbose: bool = True,
               description: str | None = None, provenance: dict | None = None) -> dict:
    """Export, parity-check and write the bundle; returns its manifest.

    ``description`` replaces the family's one-line description; ``provenance`` is merged into the
    manifest's "training" entry (e.g. the recipe and commands that built a shipped instrument).
    """
    import torch

    from export.bundle_writer import write_bundle
    from export.parity import REL_TOLERANCE, check_parity
    from export.torch_export import excite_example, export_excite, export_graph, state_example

    logging.getLogger("torch").setLevel(logging.ERROR)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    run_dir, out = Path(run_dir), Path(out)
    family, (excite, readout, field, fields) = load_family(run_dir)
    modulation = bool(fields.get("modulation", False))
    modes = int(fields["modes"])
    graphs, parity = {}, {}
    excite_bytes, adapter = export_excite(excite, modulation)
    graphs["excite"] = excite_bytes
    parity["excite"] = check_parity(adapter, excite_bytes, lambda v, s: excite_example(v, s), "controls", list(adapter.names))
    for role, module, output in (("readout", readout, "c"), ("field", field, "u")):
        if module is None:
            continue
        graphs[role] = export_graph(module, state_example(modes), "z", [output])
        parity[role] = check_parity(module, graphs[role], lambda v, s: state_example(modes, v, s), "z", [output])
    for role, result in parity.items():
        if verbose:
            print(f"parity {role:8s} max abs error {result['max_abs_error']:.3g}  max rel error {result['max_rel_error']:.3g}")
        if not result["max_rel_error"] <= REL_TOLERANCE:
            raise EigentoneError(f"{run_dir}: {role} graph parity failed: relative error {result['max_rel_error']:.3g} > "
                                 f"{REL_TOLERANCE:g} (torch vs onnxruntime); bundle not written")
    manifest = write_bundle(
        out, name=name or out.stem, family=family, modes=modes, graphs=graphs,
        note_range=tuple(fields["note_range"]), trained_sample_rate=float(fields["trained_sample_rate"]),
        modulation=modulation, release_time=float(fields.get("release_time", 0.3)),
        description=description or fields.get("description", ""),
        training={**(fields.get("training") or {}), **(provenance or {})}, metrics=fields.get("metrics"),
        parity=parity,
    )
    from engine.bundle import load_bundle

    try:
        load_bundle(out)  # the engine's own validation, before we report success
    except EigentoneError:
        out.unlink(missing_ok=True)
        raise
    if verbose:
        print(f"wrote {out} ({family}, {modes} modes, graphs: {', '.join(graphs)})")
    return manifest


def run(args: argparse.Namespace) -> int:
    export_run(args.run_dir, args.out, args.name, description=args.description)
    return 0


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(run_dir=sys.argv[1], out=sys.argv[2], name=None, description=None)))
