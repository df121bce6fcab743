"""Separated pairs: batches that teach a model that energies add up.

Two molecules far apart have the energy of the two alone, ``E(A + B) = E(A) + E(B)``.
A local model (SchNet, PaiNN) has this by construction. QDF's paper normalisation does
not: it scales the orbital coefficients and the molecular orbitals over the whole
molecule, so the orbitals on A change when B is added, however far away, and the shipped
model was off by 0.1 eV on average for two QM9 molecules 50 Å apart
(``qdf benchmark separation``). Molecules larger than any in training are where this
matters: there the normalisation runs over more orbitals than it ever did in training.

:func:`merge_separated_pairs` turns a SchNetPack batch into one where some consecutive
molecules are merged into a single structure of two fragments 100 Å apart, whose target
is the sum of the two targets. Training on such batches (``task.separated_pairs`` of
:class:`schnetpack_ext.hk_task.QDFTask`) asks the model for the sum explicitly, with
training molecules only.

Measured on QDF (``docs/benchmarks/training_qdf_relu_bf16.md``, "Phase 26"): half the
molecules in pairs for 12 epochs cut the separation error by a fifth but made single
molecules 10 % less accurate, and did not help the largest molecules. A loss term cannot
make the molecule-wide normalisation extensive; a local normalisation is (``normalisation:
local`` of :class:`schnetpack_ext.representation.QDF`).
"""

from typing import Dict, Sequence

import torch

import schnetpack.properties as properties

__all__ = ["merge_separated_pairs", "pair_groups"]


def pair_groups(merge: torch.Tensor, n_molecules: int) -> torch.Tensor:
    """Structure index of every molecule once pairs are merged.

    Args:
        merge: (n_molecules // 2,) bool, whether molecules ``2p`` and ``2p + 1`` merge.
        n_molecules: molecules in the batch (an odd last one stays alone).

    Returns:
        (n_molecules,) long: non-decreasing new structure index of each molecule.
    """
    # a molecule starts a new structure unless it is the second of a merged pair
    starts = torch.ones(n_molecules, dtype=torch.long, device=merge.device)
    starts[1:2 * merge.shape[0]:2] = (~merge).long()
    return torch.cumsum(starts, 0) - 1


def merge_separated_pairs(
    batch: Dict[str, torch.Tensor],
    extensive_keys: Sequence[str],
    merge: torch.Tensor,
    distance: float = 100.0,
) -> Dict[str, torch.Tensor]:
    """Merge molecules ``2p`` and ``2p + 1`` of a batch where ``merge[p]`` is true.

    The second molecule of a merged pair is moved by ``distance`` Å along x, beyond the
    neighbour-list cutoff of any model here; its neighbour pairs are those it had alone,
    so no pair joins the two fragments. Per-atom and per-pair entries keep their values;
    molecule indices, atom counts and the ``extensive_keys`` (per-molecule targets such
    as energies, summed over the pair) are regrouped. A molecule left over by an odd
    batch size stays alone.

    Args:
        batch: a collated SchNetPack batch (not modified).
        extensive_keys: per-molecule entries to sum over the merged pairs (the training
            targets). Other per-molecule entries are left out of the merged batch.
        merge: (n_molecules // 2,) bool.
        distance: shift of the second molecule (Å).

    Returns:
        A new batch dict.
    """
    n_atoms = batch[properties.n_atoms]
    n_molecules = n_atoms.shape[0]
    if merge.shape != (n_molecules // 2,):
        raise ValueError(f"merge must have shape ({n_molecules // 2},), not {tuple(merge.shape)}")
    groups = pair_groups(merge.to(n_atoms.device), n_molecules)
    n_structures = int(groups[-1]) + 1
    first_of_structure = torch.ones(n_molecules, dtype=torch.bool, device=groups.device)
    first_of_structure[1:] = groups[1:] != groups[:-1]

    per_molecule = {properties.idx, properties.n_atoms, properties.cell, properties.pbc}
    out = dict(batch)
    for key in extensive_keys:
        value = batch[key]
        if value.shape[0] != n_molecules:
            raise ValueError(f"{key!r} is not a per-molecule entry (shape {tuple(value.shape)})")
        out[key] = value.new_zeros((n_structures,) + value.shape[1:]).index_add_(0, groups, value)
    out[properties.n_atoms] = n_atoms.new_zeros(n_structures).index_add_(0, groups, n_atoms)
    for key in (properties.idx, properties.cell, properties.pbc):
        if key in batch:
            # SchNetPack concatenates cells and pbc flags: (3 n_molecules, ...) rows
            value = batch[key]
            kept = value.reshape(n_molecules, -1)[first_of_structure]
            out[key] = kept.reshape((-1,) + value.shape[1:])
    # other per-molecule entries (columns the task does not train on) have no value for a
    # pair; they are left out, so that code reading one fails instead of misreading it
    n_total_atoms = batch[properties.Z].shape[0]
    for key, value in batch.items():
        if (key not in per_molecule and key not in extensive_keys and not key.startswith("_")
                and isinstance(value, torch.Tensor) and value.dim() > 0
                and value.shape[0] == n_molecules != n_total_atoms):
            del out[key]

    idx_m = batch[properties.idx_m]
    out[properties.idx_m] = groups[idx_m]
    second = torch.zeros(n_molecules, dtype=torch.bool, device=groups.device)
    second[1:] = ~first_of_structure[1:]
    shift = second[idx_m].to(batch[properties.R].dtype) * distance
    positions = batch[properties.R].clone()
    positions[:, 0] += shift
    out[properties.R] = positions
    return out
