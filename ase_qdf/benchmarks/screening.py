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

The in-memory paths are timed in rounds, every path once a round in rotated order, so that a
slow spell of the machine falls on all of them alike; each path's best round is reported.
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

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


def _timed_in_rounds(paths: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, List[float]]:
    """Wall times (s) of every path, ``repeats`` rounds, each round calling every path once.

    Timing each path ``repeats`` times in a row lets a slow spell of this shared machine fall on
    one path only; in rounds, with the order rotated by one each round, drift and bursts of other
    load fall on all paths alike, so their ratios are fairer.
    """
    names = list(paths)
    times = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            paths[name]()
            times[name].append(time.perf_counter() - start)
    return times


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
    # the in-memory paths in rounds (see _timed_in_rounds); the file path above includes I/O
    engines = {"predict_energies (Atoms)": engine,
               "predict_energies (Atoms, bf16)": QDFEngine(engine.model, device="cpu", precision="bf16")}
    for other in args.also:
        engines[f"predict_energies (Atoms, {other})"] = QDFEngine(other, device="cpu")
    paths = {name: (lambda e=e: predict_energies(molecules, model=e, batch_size=args.batch_size))
             for name, e in engines.items()}
    for name, experiment in BASELINES.items():
        model = model_from_experiment(experiment).eval()
        paths[f"{name} (Atoms, SchNetPack)"] = (
            lambda m=model, c=neighbor_cutoff(experiment): spk_energies(m, molecules, c, batch_size=args.batch_size))
    rounds = _timed_in_rounds(paths, args.repeats)
    for name, times in rounds.items():
        rows[name] = n / min(times)
    schnet = rows["SchNet (Atoms, SchNetPack)"]
    result = {
        "machine": machine_info(),
        "model": str(engine.model.qdf_path),
        "split": args.split,
        "n_molecules": n,
        "mean_atoms": float(np.mean([len(a) for a in molecules])),
        "batch_size": args.batch_size,
        "molecules_per_s": rows,
        "timing": f"best of {args.repeats}; the file path first, then the in-memory paths in rounds, each round "
                  "calling every path once, the order rotated by one each round",
        "molecules_per_s_by_round": {name: [n / t for t in times] for name, times in rounds.items()},
        "ratio_vs_schnet": {k: v / schnet for k, v in rows.items()},
    }
    width = max(len(k) for k in rows)
    for k, v in rows.items():
        print(f"{k:<{width}}  {v:8.1f} mol/s  {v / schnet:6.3f} x SchNet")
    save_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
