"""Energies of pymatgen molecules: ``Molecule`` -> ``ase.Atoms`` -> QDFCalculator.

    python examples/pymatgen_input.py [--model PATH] [--xyz FILE ...]

Builds a few molecules as ``pymatgen.core.Molecule`` (or reads ``--xyz`` files with
pymatgen), converts them with :func:`ase_qdf.convert.from_pymatgen` (which checks
that the molecule is neutral and closed-shell) and prints the QDF energy,
atomization energy and largest force. A charged molecule is rejected on purpose.
The model is ``--model``, else ``$QDF_MODEL``, else the shipped model.
``QDF_SMOKE=1`` runs a tiny version (one molecule).
"""

import argparse
import os

import numpy as np
from pymatgen.core import Molecule

from ase_qdf import InvalidMoleculeError, QDFCalculator
from ase_qdf.convert import from_pymatgen
from ase_qdf.predict import resolve_model_or_exit

SMOKE = os.environ.get("QDF_SMOKE") == "1"

# Cartesian coordinates in Å (approximate equilibrium geometries).
MOLECULES = {
    "formaldehyde": (["C", "O", "H", "H"],
                     [[0.0, 0.0, 0.0], [0.0, 0.0, 1.205], [0.0, 0.942, -0.587], [0.0, -0.942, -0.587]]),
    "water": (["O", "H", "H"], [[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]]),
    "hydrogen fluoride": (["H", "F"], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.917]]),
}



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--xyz", nargs="*", default=[], help="molecule files pymatgen can read")
    args = parser.parse_args(argv)

    molecules = {name: Molecule(species, coords) for name, (species, coords) in MOLECULES.items()}
    if SMOKE:
        molecules = dict(list(molecules.items())[:1])
    for path in args.xyz:
        molecules[path] = Molecule.from_file(path)

    calc = QDFCalculator(resolve_model_or_exit(args.model))  # device="auto": CUDA if available
    for name, mol in molecules.items():
        atoms = from_pymatgen(mol)  # InvalidMoleculeError if charged or open-shell
        atoms.calc = calc
        energy = atoms.get_potential_energy()
        fmax = np.linalg.norm(atoms.get_forces(), axis=1).max()
        print(f"{name:20s} {atoms.get_chemical_formula():10s} E = {energy:12.4f} eV  "
              f"atomization = {calc.get_property('atomization_energy', atoms):9.4f} eV  "
              f"max |F| = {fmax:.3f} eV/Å")

    # The model covers neutral closed-shell molecules only: a cation is refused.
    cation = Molecule(["O", "H", "H", "H"],
                      [[0.0, 0.0, 0.0], [0.0, 0.94, 0.35], [0.81, -0.47, 0.35], [-0.81, -0.47, 0.35]],
                      charge=1)
    try:
        from_pymatgen(cation)
    except InvalidMoleculeError as err:
        print(f"H3O+ rejected as expected: {err}")


if __name__ == "__main__":
    main()
