"""Benchmarks of ase-qdf: ``qdf benchmark <name> ...`` or ``python -m ase_qdf.benchmarks.<name>``.

Names:
    rotation: rotation invariance of energies on QM9 molecules.
    separation: size consistency, E(A + B far apart) - E(A) - E(B), on QM9 molecules.
    neighbourhoods: neighbourhood sizes of the local normalisation, under14 against over15.
    throughput: training and inference molecules/s beside SchNet and PaiNN.
    scaling: time and peak memory of energy + forces against system size.
    extrapolation: MAE on the QM9 test split and on over15 molecules, per size; table and plots.
    blend: validation-chosen prediction average of two or more extrapolation records.
    screening: molecules/s of qdf screen and predict_energies beside SchNet and PaiNN.
    dft: time of a PySCF B3LYP/6-31G(2df,p) single point beside QDF's (needs ase-qdf[dft]).
    curves: learning curves (validation MAE against epoch) of spktrain runs, side by side.
    report: markdown tables and plots from their JSON files.
"""

import importlib
import sys
from typing import List, Optional

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS = ("rotation", "separation", "neighbourhoods", "blend", "throughput", "scaling", "extrapolation", "screening", "dft", "curves", "report")


def main(argv: Optional[List[str]] = None):
    """Dispatch ``argv = [name, *options]`` to a benchmark module's ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHMARKS:
        print(__doc__)
        raise SystemExit(2)
    module = importlib.import_module(f"ase_qdf.benchmarks.{argv[0]}")
    return module.main(argv[1:])
