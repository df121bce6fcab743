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

__all__ = ["ORBITAL_SETS", "SUPPORTED_ELEMENTS", "OrbitalTables", "orbital_layouts", "orbital_tables"]

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
        layout_index, layouts: the elements grouped by slot layout (:func:`orbital_layouts`).
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
        self.layout_index, self.layouts = orbital_layouts(self.mask, self.second_shell)


LayoutRuns = Tuple[Tuple[int, int, bool], ...]


def orbital_layouts(mask: torch.Tensor, second_shell: torch.Tensor) -> Tuple[torch.Tensor, List[Tuple[int, LayoutRuns]]]:
    """The elements grouped by the layout of their orbital slots.

    Hydrogen carries 4 orbitals, C, N, O and F 14: evaluated on all 14 slots of the
    padded tables, the pairs of a hydrogen atom (about half of all pairs) would spend 10
    of them on zeros, so the model evaluates the pairs of each layout on its own slots.

    Args:
        mask: (n_elements, max_orbitals), nonzero where a slot holds an orbital; an
            element's orbitals must fill its first slots.
        second_shell: (n_elements, max_orbitals), nonzero where the slot has q = 2.

    Returns:
        ``(layout_index, layouts)``: (n_elements,) long layout of every table row, and
        per layout ``(n_slots, runs)``, ``runs`` the ``(first, end, second_shell)`` slot
        ranges of one shell each.
    """
    mask, second_shell = mask.cpu() > 0, second_shell.cpu() > 0
    keys, layout_index = [], []
    for row in range(mask.shape[0]):
        n_slots = int(mask[row].sum())
        if not bool(mask[row, :n_slots].all()):
            raise ValueError("the orbital tables must fill the first slots of every element")
        key = (n_slots, tuple(second_shell[row, :n_slots].tolist()))
        if key not in keys:
            keys.append(key)
        layout_index.append(keys.index(key))
    layouts = []
    for n_slots, pattern in keys:
        runs, first = [], 0
        for slot in range(1, n_slots + 1):
            if slot == n_slots or pattern[slot] != pattern[first]:
                runs.append((first, slot, pattern[first]))
                first = slot
        layouts.append((n_slots, tuple(runs)))
    return torch.tensor(layout_index, dtype=torch.long), layouts


def orbital_tables() -> OrbitalTables:
    """Tables for the default H, C, N, O, F orbital sets."""
    return OrbitalTables(ORBITAL_SETS)
