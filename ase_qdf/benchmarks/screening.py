"""Screening speed of the user-facing paths beside SchNet, same molecules, same run.

Times, on the same QM9 molecules (``under14`` test, or with ``--split over15``
larger ones, 15-29 atoms): ``qdf screen`` on an extxyz file
(reading, validation, CSV writing included), :func:`ase_qdf.predict_energies` on a
list of ``Atoms`` (in full precision and with ``precision="bf16"``), and SchNetPack's SchNet and PaiNN (random weights of the
``schnet_qm9_under14`` / ``painn_qm9_under14`` experiments; speed does not depend on
the weights) from ``Atoms`` to energies with SchNetPack's ``AtomsConverter``::

    qdf benchmark screening --molecules 1000 --json docs/benchmarks/screening.json
    qdf benchmark screening --molecules 500 --also qdf_qm9_average   # a second model in the same run
    qdf benchmark screening --molecules 256 --split over15           # larger molecules
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
from ase.io import write

from .models import model_from_experiment, neighbor_cutoff, save_json, spk_energies
from .throughput import machine_info

__all__ = ["main"]

BASELINES = {"SchNet": "schnet_qm9_under14", "PaiNN": "painn_qm9_under14"}


def _timed(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (s): the least disturbed by other load."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: List[str] = None) -> Dict[str, object]:
    from ase_qdf import cli
    from ase_qdf.benchmarks.extrapolation import load_molecules
    from ase_qdf.predict import QDFEngine, predict_energies

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ase-qdf model file (default: the shipped model)")
    parser.add_argument("--molecules", type=int, default=1000, help="number of molecules")
    parser.add_argument("--split", choices=("test", "over15"), default="test",
                        help="under14 test molecules (the first --molecules) or over15 molecules (15-29 atoms, "
                             "--molecules at random, seed 1729)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--also", action="append", default=[], metavar="MODEL",
                        help="another model file or shipped model name, timed with predict_energies in the same "
                             "run (repeatable)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    if args.split == "over15":
        _, molecules, _ = load_molecules("over15", over15=args.molecules)
    else:
        _, molecules, _ = load_molecules("test")
        molecules = molecules[: args.molecules]
    n = len(molecules)
    engine = QDFEngine(args.model, device="cpu")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "molecules.extxyz"
        write(source, molecules, format="extxyz")
        model_args = ["--model", args.model] if args.model else []

        def screen():
            out = Path(tmp) / "out.csv"
            out.unlink(missing_ok=True)
            rc = cli.main(["screen", str(source), "-o", str(out), "--quiet", "--device", "cpu",
                           "--batch-size", str(args.batch_size), *model_args])
            if rc != 0:
                raise RuntimeError(f"qdf screen failed with exit status {rc}")

        rows["qdf screen (file to CSV)"] = n / _timed(screen, args.repeats)
    rows["predict_energies (Atoms)"] = n / _timed(
        lambda: predict_energies(molecules, model=engine, batch_size=args.batch_size), args.repeats)
    bf16 = QDFEngine(engine.model, device="cpu", precision="bf16")
    rows["predict_energies (Atoms, bf16)"] = n / _timed(
        lambda: predict_energies(molecules, model=bf16, batch_size=args.batch_size), args.repeats)
    for other in args.also:
        other_engine = QDFEngine(other, device="cpu")
        rows[f"predict_energies (Atoms, {other})"] = n / _timed(
            lambda: predict_energies(molecules, model=other_engine, batch_size=args.batch_size), args.repeats)
    for name, experiment in BASELINES.items():
        model = model_from_experiment(experiment).eval()
        cutoff = neighbor_cutoff(experiment)
        rows[f"{name} (Atoms, SchNetPack)"] = n / _timed(
            lambda: spk_energies(model, molecules, cutoff, batch_size=args.batch_size), args.repeats)
    schnet = rows["SchNet (Atoms, SchNetPack)"]
    result = {
        "machine": machine_info(),
        "model": str(engine.model.qdf_path),
        "split": args.split,
        "n_molecules": n,
        "mean_atoms": float(np.mean([len(a) for a in molecules])),
        "batch_size": args.batch_size,
        "molecules_per_s": rows,
        "ratio_vs_schnet": {k: v / schnet for k, v in rows.items()},
    }
    width = max(len(k) for k in rows)
    for k, v in rows.items():
        print(f"{k:<{width}}  {v:8.1f} mol/s  {v / schnet:6.3f} x SchNet")
    save_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
