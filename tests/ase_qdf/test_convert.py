import numpy as np
import pytest
from ase.build import molecule
from pymatgen.core import Molecule

from ase_qdf import InvalidMoleculeError, from_pymatgen, validate_atoms


def _pmg(name, **kwargs):
    atoms = molecule(name)
    return Molecule(atoms.get_chemical_symbols(), atoms.positions, **kwargs), atoms


def test_from_pymatgen_roundtrip():
    mol, atoms = _pmg("CH3OH")
    out = from_pymatgen(mol)
    assert out.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(out.positions, atoms.positions)
    assert not out.pbc.any()
    validate_atoms(out)


def test_from_pymatgen_rejects_charge_and_spin():
    mol, _ = _pmg("H2O", charge=2)
    with pytest.raises(InvalidMoleculeError, match="charge"):
        from_pymatgen(mol)
    mol, _ = _pmg("H2O", charge=0, spin_multiplicity=3)
    with pytest.raises(InvalidMoleculeError, match="multiplicity 3"):
        from_pymatgen(mol)
    # unchecked conversion keeps the info, so validation still rejects it
    with pytest.raises(InvalidMoleculeError, match="multiplicity"):
        validate_atoms(from_pymatgen(mol, check=False))
