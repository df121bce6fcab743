"""A short NVE molecular dynamics run (velocity Verlet) on the QDF potential.

    python examples/md_short.py [--model PATH] [--molecule H2O] [--steps 200]

Prints the total energy drift, a basic check of the forces (−dE/dR) and
their smoothness. The model is ``--model``, else ``$QDF_MODEL``, else the shipped
model. ``QDF_SMOKE=1`` runs a few steps only.
"""

import argparse
import os

import numpy as np
from ase import units
from ase.build import molecule
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from ase_qdf import QDFCalculator
from ase_qdf.predict import resolve_model_or_exit

SMOKE = os.environ.get("QDF_SMOKE") == "1"



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--molecule", default="H2O", help="name in ASE's g2 collection")
    parser.add_argument("--steps", type=int, default=10 if SMOKE else 200)
    parser.add_argument("--timestep", type=float, default=0.25, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--lebedev-order", type=int, default=17,
                        help="quadrature grid order (17: far less orientation dependence than the "
                             "shipped model's own 11; see the model card)")
    args = parser.parse_args(argv)

    atoms = molecule(args.molecule)
    atoms.calc = QDFCalculator(resolve_model_or_exit(args.model), dtype=args.dtype,
                               lebedev_order=args.lebedev_order)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=np.random.default_rng(0))
    Stationary(atoms)
    ZeroRotation(atoms)
    dyn = VelocityVerlet(atoms, timestep=args.timestep * units.fs)
    totals = []
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=1)
    dyn.run(args.steps)
    totals = np.array(totals)
    print(f"{args.steps} steps of {args.timestep} fs: total energy drift "
          f"{totals[-1] - totals[0]:+.5f} eV, fluctuation {totals.std():.5f} eV, "
          f"final T {atoms.get_temperature():.0f} K")


if __name__ == "__main__":
    main()
