"""Cost of one energy + forces evaluation against system size.

Every size runs in a fresh subprocess so that its peak memory (max RSS) is its
own. ``--experiment`` takes a comma-separated list, so that QDF and the SchNetPack
models are measured in the same run (this machine is noisy) and the report gives
their ratios. Usage::

    python -m ase_qdf.benchmarks.scaling --sizes 10,100,1000 --structure alkane
    qdf benchmark scaling --sizes 10,100,1000,10000 \
        --experiment qdf_qm9_relu_phase25_order17,schnet_qm9_under14,painn_qm9_under14
    qdf benchmark scaling --sizes 1000,10000 --experiment schnet_qm9_under14 \
        --model qdf_qm9=ase_qdf/models/qdf_qm9.pt --model qdf_qm9_average=ase_qdf/models/qdf_qm9_average.pt

``--model LABEL=FILE`` times an ase-qdf model file (an average of models included) through
the calculator's own code (:func:`ase_qdf.predict.evaluate_batch`, its neighbour list);
``--experiment`` builds random-weight models of a training config (the cost does not
depend on the weights).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional

import torch

from .models import save_json

__all__ = ["measure_one", "main"]


def measure_one(n_atoms: int, structure: str = "alkane", experiment: str = "qdf_qm9",
                overrides: List[str] = (), repeats: int = 3, model_file: Optional[str] = None) -> Dict[str, float]:
    """Time and peak memory of energy + forces for one structure (in this process).

    Args:
        n_atoms: requested size of the structure.
        structure: ``"alkane"`` or ``"cluster"``.
        experiment: a training config (random weights), or with ``model_file`` the row's label.
        overrides: Hydra overrides of the experiment.
        repeats: timed evaluations (the fastest is reported).
        model_file: an ase-qdf model file, run through the calculator's code instead.
    """
    import schnetpack as spk

    from .structures import alkane_with_atoms, organic_cluster

    atoms = alkane_with_atoms(n_atoms) if structure == "alkane" else organic_cluster(n_atoms)
    if model_file is not None:
        from ase_qdf.predict import QDFEngine, evaluate_batch

        engine = QDFEngine(model_file, device="cpu", dtype="float32")
        convert = engine.converter

        def energy_and_forces(inputs):
            return evaluate_batch(engine.model, inputs, forces=True)
    else:
        from .models import model_from_experiment, neighbor_cutoff

        model = model_from_experiment(experiment, overrides)
        # energy + forces only, as the calculator runs them: no HK map, no grid fields
        model.representation.compute_hk_fields = False
        model.output_modules = torch.nn.ModuleList([model.output_modules[0], spk.atomistic.Forces(energy_key="energy_U0", force_key="forces")])
        model.collect_derivatives()
        model.collect_outputs()
        model.eval()
        convert = spk.interfaces.AtomsConverter(
            neighbor_list=spk.transform.MatScipyNeighborList(cutoff=neighbor_cutoff(experiment, overrides)),
            dtype=torch.float32,
        )
        energy_and_forces = model
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = energy_and_forces(convert(atoms))
        out["forces"].sum().item()
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n_atoms": len(atoms),
        "requested_atoms": n_atoms,
        "structure": structure,
        "experiment": experiment,
        "model_file": model_file,
        "overrides": list(overrides),
        "seconds": min(times),
        "ms_per_atom": 1000.0 * min(times) / len(atoms),
        "peak_rss_MiB": peak_kib / 1024.0,
        "peak_rss_growth_MiB": (peak_kib - rss_before) / 1024.0,
        "kiB_per_atom": (peak_kib - rss_before) / len(atoms),
        "n_pairs": int(convert(atoms)[spk.properties.idx_i].shape[0]),
    }


def main(argv: List[str] = None) -> List[Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--structure", default="alkane", choices=["alkane", "cluster"])
    parser.add_argument("--experiment", default="qdf_qm9",
                        help="random-weight model(s) of these experiments, comma separated (the cost does not "
                             "depend on the weights); --override applies to every one")
    parser.add_argument("--override", action="append", default=[])
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=FILE",
                        help="also time this ase-qdf model file, labelled LABEL (repeatable)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size here
    parser.add_argument("--model-file", help=argparse.SUPPRESS)  # internal: with --one
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.structure, args.experiment, args.override,
                                     model_file=args.model_file)))
        return []
    if any("=" not in item for item in args.model):
        parser.error("--model takes LABEL=FILE")
    runs = [(experiment, None) for experiment in args.experiment.split(",") if experiment]
    runs += [tuple(item.split("=", 1)) for item in args.model]
    rows = []
    for experiment, model_file in runs:
        for n in [int(s) for s in args.sizes.split(",")]:
            cmd = [sys.executable, "-m", "ase_qdf.benchmarks.scaling", "--one", str(n),
                   "--structure", args.structure, "--experiment", experiment]
            if model_file is not None:
                cmd += ["--model-file", model_file]
            for o in args.override:
                cmd += ["--override", o]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"n_atoms": n, "experiment": experiment, "error": proc.stderr.strip().splitlines()[-1]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]))
    save_json(rows, args.json)
    return rows


if __name__ == "__main__":
    main()
