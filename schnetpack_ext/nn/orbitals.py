"""The QDF atomic orbital sets: which radial Gaussian types each element carries.

Every element carries a fixed list of orbital *types*; each type has its own
learnable exponent and LCAO coefficient vector. Following the original model,
the "2p" types are radial functions like "2s" and differ only by their own
parameters.

References:
    .. [#qdf] Tsubaki, Mizoguchi. Phys. Rev. Lett. 125, 206401 (2020).
"""

from typing import Dict, List, Tuple

import torch

__all__ = ["ORBITAL_SETS", "SUPPORTED_ELEMENTS", "OrbitalTables", "orbital_tables"]

#: element (atomic number) -> list of (orbital label, principal number q)
ORBITAL_SETS: Dict[int, List[Tuple[str, int]]] = {
    1: [(f"1s{k}", 1) for k in range(4)],
}
for _z in (6, 7, 8, 9):
    ORBITAL_SETS[_z] = (
        [(f"1s{k}", 1) for k in range(6)]
        + [(f"2s{k}", 2) for k in range(4)]
        + [(f"2p{k}", 2) for k in range(4)]
    )

#: atomic numbers the model knows (H, C, N, O, F)
SUPPORTED_ELEMENTS: Tuple[int, ...] = tuple(sorted(ORBITAL_SETS))


class OrbitalTables:
    """Padded per-element lookup tables of the orbital sets.

    Attributes:
        element_index: (119,) long, atomic number -> row, -1 if unsupported.
        type_index: (n_elements, max_orbitals) long, slot -> global orbital type.
        second_shell: (n_elements, max_orbitals) bool, q == 2.
        mask: (n_elements, max_orbitals) bool, slot holds an orbital.
        n_types: total number of orbital types.
    """

    def __init__(self, orbital_sets: Dict[int, List[Tuple[str, int]]] = ORBITAL_SETS):
        elements = sorted(orbital_sets)
        max_orbitals = max(len(v) for v in orbital_sets.values())
        self.element_index = torch.full((119,), -1, dtype=torch.long)
        self.type_index = torch.zeros(len(elements), max_orbitals, dtype=torch.long)
        self.second_shell = torch.zeros(len(elements), max_orbitals, dtype=torch.bool)
        self.mask = torch.zeros(len(elements), max_orbitals, dtype=torch.bool)
        self.labels: List[str] = []
        n_types = 0
        for row, z in enumerate(elements):
            self.element_index[z] = row
            for slot, (label, q) in enumerate(orbital_sets[z]):
                if q not in (1, 2):
                    raise ValueError(f"principal number {q} not supported")
                self.type_index[row, slot] = n_types
                self.second_shell[row, slot] = q == 2
                self.mask[row, slot] = True
                self.labels.append(f"Z{z}:{label}")
                n_types += 1
        self.n_types = n_types
        self.elements = tuple(elements)


def orbital_tables() -> OrbitalTables:
    """Tables for the default H, C, N, O, F orbital sets."""
    return OrbitalTables(ORBITAL_SETS)
