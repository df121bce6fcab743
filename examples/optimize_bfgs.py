"""Relax a molecule with ASE's BFGS on the QDF potential energy surface.

    python examples/optimize_bfgs.py [--model PATH] [--molecule CH3CH2OH] [--fmax 0.05]

The model is ``--model``, else ``$QDF_MODEL``, else the shipped model.
``QDF_SMOKE=1`` runs a few steps only.
"""

import argparse
import os

from ase.build import molecule
from ase.optimize import BFGS

from ase_qdf import QDFCalculator
from ase_qdf.predict import resolve_model_or_exit

SMOKE = os.environ.get("QDF_SMOKE") == "1"



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--molecule", default="CH3CH2OH", help="name in ASE's g2 collection")
    parser.add_argument("--fmax", type=float, default=0.05, help="force criterion (eV/Å)")
    parser.add_argument("--steps", type=int, default=5 if SMOKE else 200)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--lebedev-order", type=int, default=17,
                        help="quadrature grid order (17: far less orientation dependence than the "
                             "shipped model's own 11; see the model card)")
    args = parser.parse_args(argv)

    atoms = molecule(args.molecule)
    atoms.rattle(0.05, seed=0)
    atoms.calc = QDFCalculator(resolve_model_or_exit(args.model), dtype=args.dtype,
                               lebedev_order=args.lebedev_order)
    e0 = atoms.get_potential_energy()
    opt = BFGS(atoms, maxstep=0.1)
    converged = opt.run(fmax=args.fmax, steps=args.steps)
    e1 = atoms.get_potential_energy()
    print(f"{args.molecule}: E {e0:.4f} -> {e1:.4f} eV (change {e1 - e0:+.4f} eV) after "
          f"{opt.get_number_of_steps()} steps, converged: {converged}")
    print(f"atomization energy: {atoms.calc.get_property('atomization_energy', atoms):.4f} eV")


if __name__ == "__main__":
    main()
