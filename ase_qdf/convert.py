"""Conversions from other molecule objects to ASE ``Atoms``."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ase_qdf.validation import InvalidMoleculeError

__all__ = ["from_pymatgen"]


def from_pymatgen(molecule, check: bool = True) -> Atoms:
    """Convert a pymatgen ``Molecule`` to ``ase.Atoms`` (non-periodic).

    ``charge`` and ``spin_multiplicity`` are copied to ``atoms.info["charge"]`` and
    ``atoms.info["multiplicity"]``.

    Args:
        molecule: a ``pymatgen.core.Molecule``.
        check: raise :class:`InvalidMoleculeError` unless the molecule is neutral
            and a singlet (what the QDF model supports).
    """
    from pymatgen.core import Molecule

    if not isinstance(molecule, Molecule):
        raise TypeError(f"expected a pymatgen Molecule, got {type(molecule).__name__}")
    charge = float(molecule.charge)
    multiplicity = int(molecule.spin_multiplicity)
    if check and abs(charge) > 1e-8:
        raise InvalidMoleculeError(f"molecule charge is {charge:g}; only neutral molecules are supported", "charge")
    if check and multiplicity != 1:
        raise InvalidMoleculeError(
            f"spin multiplicity {multiplicity}; only closed-shell (singlet) molecules are supported", "spin"
        )
    numbers = [site.specie.Z for site in molecule]
    atoms = Atoms(numbers=numbers, positions=np.asarray(molecule.cart_coords, dtype=float), pbc=False)
    atoms.info["charge"] = charge
    atoms.info["multiplicity"] = multiplicity
    return atoms
