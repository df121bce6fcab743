"""Input checks for the QDF model: neutral, closed-shell, isolated H/C/N/O/F molecules.

The QDF model was trained on QM9 (neutral closed-shell molecules of H, C, N, O and F,
no periodicity). :func:`validate_atoms` rejects anything outside that domain with an
:class:`InvalidMoleculeError` that names the problem, instead of returning a number
that means nothing.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from schnetpack_ext.nn.orbitals import SUPPORTED_ELEMENTS

__all__ = [
    "InvalidMoleculeError",
    "MAX_ATOMS",
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
#: molecules with more atoms are refused before any work is done (memory for energy +
#: forces grows about 0.6 MiB per atom on Lebedev order 11 and 1.1 MiB on order 17, the
#: shipped file's grid: 10,001 atoms take 6.3 and 10.9 GiB); raise it
#: (``ase_qdf.validation.MAX_ATOMS = ...`` or ``validate_atoms(..., max_atoms=...)``)
#: on a machine with the memory for it
MAX_ATOMS = 10_000
_TOL = 1e-8


class InvalidMoleculeError(ValueError):
    """The molecule is outside the model's domain.

    Attributes:
        reason: short machine-readable code: ``"type"``, ``"empty"``,
            ``"too_large"``, ``"non_finite"``, ``"element"``, ``"pbc"``, ``"charge"``,
            ``"spin"``, ``"odd_electrons"`` or ``"too_close"``.
    """

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


def _fail(message, reason):
    raise InvalidMoleculeError(message, reason)


def _info_number(atoms: Atoms, key: str, reason: str) -> Optional[float]:
    """``atoms.info[key]`` as a finite float, None when absent; anything else is refused."""
    value = atoms.info.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        _fail(f"atoms.info[{key!r}] = {value!r} is not a finite number", reason)
    return number


def _total_charge(atoms: Atoms) -> float:
    charge = _info_number(atoms, "charge", "charge")
    if charge is not None:
        return charge
    charges = atoms.get_initial_charges()
    if not np.isfinite(charges).all():
        _fail("non-finite initial charges (NaN or inf)", "charge")
    return float(np.sum(charges))


def validate_atoms(atoms: Atoms, max_atoms: Optional[int] = None) -> Atoms:
    """Check that ``atoms`` is a molecule the QDF model can handle.

    Checks, in this order: it is an :class:`ase.Atoms`; not empty; at most
    ``max_atoms`` atoms; finite positions; elements H, C, N, O, F only; no
    periodic boundary condition; total charge zero (``atoms.info["charge"]``, else
    the sum of the initial charges); closed shell (``atoms.info["spin"]`` zero, ``atoms.info["multiplicity"]``
    one, all initial magnetic moments zero); an even electron count; no two
    atoms closer than :data:`MIN_DISTANCE` Å. Numbers in ``atoms.info`` that are
    not finite numbers (``"abc"``, NaN) are refused too.

    Args:
        atoms: the molecule, positions in Å (Bohr cannot be told apart: convert first).
        max_atoms: size limit; None means :data:`MAX_ATOMS` (read at call time).

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
    limit = MAX_ATOMS if max_atoms is None else int(max_atoms)
    if n > limit:
        _fail(
            f"{n} atoms is more than the limit of {limit} atoms (ase_qdf.validation.MAX_ATOMS; "
            "about 0.6 MiB of memory per atom): split the system or raise the limit",
            "too_large",
        )
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
    spin = _info_number(atoms, "spin", "spin")
    if spin is not None and abs(spin) > _TOL:
        _fail(f"atoms.info['spin'] = {spin}: only closed-shell (singlet) molecules are supported", "spin")
    multiplicity = _info_number(atoms, "multiplicity", "spin")
    if multiplicity is not None and abs(multiplicity - 1.0) > _TOL:
        _fail(
            f"spin multiplicity {multiplicity}: only closed-shell (singlet) molecules are supported",
            "spin",
        )
    magmoms = atoms.get_initial_magnetic_moments()
    if magmoms.size and not np.abs(magmoms).max() <= _TOL:  # NaN moments are refused too
        idx = np.flatnonzero(~(np.abs(magmoms.reshape(n, -1)).max(axis=1) <= _TOL)).tolist()
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
