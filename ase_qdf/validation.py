"""Input checks for the QDF model: neutral, closed-shell, isolated H/C/N/O/F molecules.

The QDF model was trained on QM9 (neutral closed-shell molecules of H, C, N, O and F,
no periodicity). :func:`validate_atoms` rejects anything outside that domain with an
:class:`InvalidMoleculeError` that names the problem, instead of returning a number
that means nothing.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from schnetpack_ext.nn.orbitals import SUPPORTED_ELEMENTS

__all__ = [
    "InvalidMoleculeError",
    "MIN_DISTANCE",
    "SUPPORTED_NUMBERS",
    "SUPPORTED_SYMBOLS",
    "validate_atoms",
]

#: atomic numbers the model knows: H, C, N, O, F (those with QDF orbital sets)
SUPPORTED_NUMBERS = SUPPORTED_ELEMENTS
SUPPORTED_SYMBOLS = tuple(chemical_symbols[z] for z in SUPPORTED_NUMBERS)
#: two atoms closer than this (Å) are rejected
MIN_DISTANCE = 0.5
_TOL = 1e-8


class InvalidMoleculeError(ValueError):
    """The molecule is outside the model's domain.

    Attributes:
        reason: short machine-readable code: ``"type"``, ``"empty"``,
            ``"non_finite"``, ``"element"``, ``"pbc"``, ``"charge"``, ``"spin"``,
            ``"odd_electrons"`` or ``"too_close"``.
    """

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


def _fail(message, reason):
    raise InvalidMoleculeError(message, reason)


def _total_charge(atoms: Atoms) -> float:
    charge = atoms.info.get("charge")
    if charge is not None:
        return float(charge)
    return float(np.sum(atoms.get_initial_charges()))


def validate_atoms(atoms: Atoms) -> Atoms:
    """Check that ``atoms`` is a molecule the QDF model can handle.

    Checks, in this order: it is an :class:`ase.Atoms`; not empty; finite
    positions; elements H, C, N, O, F only; no periodic boundary condition;
    total charge zero (``atoms.info["charge"]``, else the sum of the initial
    charges); closed shell (``atoms.info["spin"]`` zero, ``atoms.info["multiplicity"]``
    one, all initial magnetic moments zero); an even electron count; no two
    atoms closer than :data:`MIN_DISTANCE` Å.

    Returns:
        ``atoms`` unchanged.

    Raises:
        InvalidMoleculeError: (a ``ValueError``) naming the first problem found.
    """
    if not isinstance(atoms, Atoms):
        _fail(f"expected an ase.Atoms object, got {type(atoms).__name__}", "type")
    n = len(atoms)
    if n == 0:
        _fail("the molecule has no atoms", "empty")
    positions = atoms.get_positions()
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        _fail(f"non-finite positions (NaN or inf) for atom indices {bad.tolist()}", "non_finite")
    numbers = atoms.get_atomic_numbers()
    unsupported = sorted(set(numbers.tolist()) - set(SUPPORTED_NUMBERS))
    if unsupported:
        names = ", ".join(
            chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}" for z in unsupported
        )
        _fail(
            f"unsupported element(s) {names}; the QDF model supports only "
            f"{', '.join(SUPPORTED_SYMBOLS)}",
            "element",
        )
    if np.any(atoms.get_pbc()):
        _fail(
            f"periodic boundary conditions {atoms.get_pbc().tolist()} are not supported: "
            "QDF is a model of isolated molecules (set atoms.pbc = False)",
            "pbc",
        )
    charge = _total_charge(atoms)
    if abs(charge) > _TOL:
        _fail(f"total charge is {charge:g}; only neutral molecules are supported", "charge")
    spin = atoms.info.get("spin")
    if spin is not None and abs(float(spin)) > _TOL:
        _fail(f"atoms.info['spin'] = {spin}: only closed-shell (singlet) molecules are supported", "spin")
    multiplicity = atoms.info.get("multiplicity")
    if multiplicity is not None and abs(float(multiplicity) - 1.0) > _TOL:
        _fail(
            f"spin multiplicity {multiplicity}: only closed-shell (singlet) molecules are supported",
            "spin",
        )
    magmoms = atoms.get_initial_magnetic_moments()
    if magmoms.size and np.abs(magmoms).max() > _TOL:
        idx = np.flatnonzero(np.abs(magmoms.reshape(n, -1)).max(axis=1) > _TOL).tolist()
        _fail(
            f"non-zero initial magnetic moments on atoms {idx}: only closed-shell "
            "molecules are supported",
            "spin",
        )
    n_electrons = int(numbers.sum())
    if n_electrons % 2:
        _fail(
            f"odd electron count ({n_electrons}) for a neutral molecule ({atoms.get_chemical_formula()}): "
            "radicals are not supported",
            "odd_electrons",
        )
    if n > 1:
        from scipy.spatial import cKDTree

        pairs = cKDTree(positions).query_pairs(MIN_DISTANCE, output_type="ndarray")
        if len(pairs):
            d = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
            k = int(np.argmin(d))
            i, j = sorted(pairs[k].tolist())
            _fail(
                f"atoms {i} ({atoms[i].symbol}) and {j} ({atoms[j].symbol}) are {d[k]:.3f} Å apart, "
                f"closer than {MIN_DISTANCE} Å" + (f" ({len(pairs)} such pairs)" if len(pairs) > 1 else ""),
                "too_close",
            )
    return atoms
