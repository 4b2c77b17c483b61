"""`eigentone export RUN_DIR --out NAME.etone`: any family's trained run -> a validated bundle.

The run folder (``training/run_folder.py``) names its family; the family (``training/family.py``)
gives its export graphs through ``Family.graphs``: an excite module (controls (V, 4) -> the contract's
outputs, ``eigentone.contract``), an optional block-rate readout and field module, and the manifest
fields it decides. Every graph is exported with a dynamic ``voices`` axis, checked against onnxruntime
(``export/parity.py``) and packed by ``export/bundle_writer.py`` (sha256 per graph). A run dir without
RUN_DIR/model.pt (training not finished) is refused with one line; nothing is written unless every
check passes.
"""

from __future__ import annotations

import argparse
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
    from training.run_folder import load_run, numeric_metrics

    run_dir, out = Path(run_dir), Path(out)
    run = load_run(run_dir)
    graphs = run.graphs()
    info = graphs.info
    excite, readout, field = graphs.excite, graphs.readout, graphs.field
    modulation, modes = bool(info.modulation), int(info.modes)
    onnx_graphs, parity = {}, {}
    excite_bytes, adapter = export_excite(excite, modulation, attack="attack" in (info.extra or {}))
    onnx_graphs["excite"] = excite_bytes
    parity["excite"] = check_parity(adapter, excite_bytes, lambda v, s: excite_example(v, s), "controls", list(adapter.names))
    for role, module, output in (("readout", readout, "c"), ("field", field, "u")):
        if module is None:
            continue
        onnx_graphs[role] = export_graph(module, state_example(modes), "z", [output])
        parity[role] = check_parity(module, onnx_graphs[role], lambda v, s: state_example(modes, v, s), "z", [output])
    for role, result in parity.items():
        if verbose:
            print(f"parity {role:8s} max abs error {result['max_abs_error']:.3g}  max rel error {result['max_rel_error']:.3g}")
        if not result["max_rel_error"] <= REL_TOLERANCE:
            raise EigentoneError(f"{run_dir}: {role} graph parity failed: relative error {result['max_rel_error']:.3g} > "
                                 f"{REL_TOLERANCE:g} (torch vs onnxruntime); bundle not written")
    from export.op_subset import bundle_problems  # plugin-core: whether the DAW plugin can play it

    unplayable = bundle_problems(onnx_graphs)
    manifest = write_bundle(
        out, name=name or out.stem, family=run.family.name, modes=modes, graphs=onnx_graphs,
        note_range=tuple(info.note_range), trained_sample_rate=float(info.trained_sample_rate),
        modulation=modulation, release_time=float(info.release_time), description=description or info.description,
        training={**run.provenance, **(provenance or {})}, metrics=numeric_metrics(run.metrics), parity=parity,
        extra={**(info.extra or {}), "plugin_ready": not unplayable},
    )
    from engine.bundle import load_bundle

    try:
        load_bundle(out)  # the engine's own validation, before we report success
    except EigentoneError:
        out.unlink(missing_ok=True)
        raise
    if verbose:
        print(f"wrote {out} ({run.family.name}, {modes} modes, graphs: {', '.join(onnx_graphs)})")
    if unplayable:
        role, problems = next(iter(unplayable.items()))
        print(f"note: the DAW plugin cannot play {out} (graph '{role}': {problems[0]}); the Python engine plays it")
    return manifest


def run(args: argparse.Namespace) -> int:
    export_run(args.run_dir, args.out, args.name, description=args.description)
    return 0


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(run_dir=sys.argv[1], out=sys.argv[2], name=None, description=None)))
