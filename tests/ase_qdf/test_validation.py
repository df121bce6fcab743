import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from ase_qdf.validation import InvalidMoleculeError, validate_atoms


def test_good_molecules_pass():
    for name in ("H2O", "CH3CH2OH", "HCN", "CH3COF"):
        atoms = molecule(name)
        assert validate_atoms(atoms) is atoms


def _bad(atoms, match, reason):
    with pytest.raises(InvalidMoleculeError, match=match) as info:
        validate_atoms(atoms)
    assert isinstance(info.value, ValueError)
    assert info.value.reason == reason


def test_unsupported_element_is_named_with_supported_list():
    _bad(molecule("SiH4"), r"Si.*supports only H, C, N, O, F", "element")
    _bad(molecule("CH3Cl"), r"Cl", "element")


def test_periodic_is_rejected():
    atoms = molecule("H2O", vacuum=5.0)
    atoms.pbc = [True, False, False]
    _bad(atoms, "periodic", "pbc")


def test_empty_is_rejected():
    _bad(Atoms(), "no atoms", "empty")


def test_not_atoms_is_rejected():
    _bad("H2O", "ase.Atoms", "type")


def test_non_finite_positions():
    atoms = molecule("H2O")
    atoms.positions[1, 2] = np.nan
    _bad(atoms, r"non-finite.*\[1\]", "non_finite")
    atoms = molecule("H2O")
    atoms.positions[2, 0] = np.inf
    _bad(atoms, r"\[2\]", "non_finite")


def test_atoms_too_close_name_indices_and_distance():
    atoms = molecule("CH4")
    atoms.positions[3] = atoms.positions[0] + [0.3, 0.0, 0.0]
    _bad(atoms, r"atoms 0 \(C\) and 3 \(H\) are 0\.300 Å apart", "too_close")


def test_charge_from_info_and_initial_charges():
    atoms = molecule("H2O")
    atoms.info["charge"] = 1
    _bad(atoms, "total charge is 1", "charge")
    atoms = molecule("H2O")
    atoms.set_initial_charges([0.0, 0.0, -1.0])
    _bad(atoms, "total charge is -1", "charge")
    atoms = molecule("H2O")
    atoms.set_initial_charges([-0.8, 0.4, 0.4])  # partial charges summing to zero are fine
    validate_atoms(atoms)


def test_spin_checks():
    atoms = molecule("H2O")
    atoms.info["spin"] = 2
    _bad(atoms, "spin", "spin")
    atoms = molecule("H2O")
    atoms.info["multiplicity"] = 3
    _bad(atoms, "multiplicity 3", "spin")
    atoms = molecule("H2O")
    atoms.set_initial_magnetic_moments([0.0, 1.0, 0.0])
    _bad(atoms, r"magnetic moments on atoms \[1\]", "spin")
    atoms = molecule("H2O")
    atoms.info["multiplicity"] = 1
    validate_atoms(atoms)


def test_odd_electron_count():
    methyl = molecule("CH3")
    methyl.set_initial_magnetic_moments(None)  # g2 sets a moment; the parity check must still fire
    _bad(methyl, r"odd electron count \(9\)", "odd_electrons")
    _bad(Atoms("H", positions=[[0, 0, 0]]), "odd electron", "odd_electrons")
