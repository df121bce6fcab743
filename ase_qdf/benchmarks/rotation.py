"""Rotation invariance of predicted energies on QM9 molecules.

Rotates every molecule at random and reports mean and max |E(rotated) - E|.
Usage::

    python -m ase_qdf.benchmarks.rotation --experiment qdf_qm9 --molecules 50
    python -m ase_qdf.benchmarks.rotation --model runs/qdf_qm9/best_model --trust-pickle
"""

import argparse
from typing import Callable, Dict, List, Sequence

import numpy as np
from ase import Atoms
from scipy.spatial.transform import Rotation

__all__ = ["rotated_copies", "rotation_invariance", "main"]


def rotated_copies(molecules: Sequence[Atoms], n_rotations: int = 1, seed: int = 0) -> List[Atoms]:
    """Copies of ``molecules``, each turned about its centre of mass by random rotations.

    The rotations (uniform on SO(3)) depend only on ``seed``, the number of molecules
    and ``n_rotations``, so a benchmark in random orientations is repeatable.

    Args:
        molecules: the molecules (not modified).
        n_rotations: rotated copies per molecule.
        seed: seed of the rotations.

    Returns:
        ``n_rotations`` copies of the first molecule, then of the second, and so on.
    """
    rotations = Rotation.random(n_rotations * len(molecules), random_state=seed).as_matrix()
    rotated = []
    for k, atoms in enumerate(molecules):
        for r in range(n_rotations):
            moved = atoms.copy()
            centre = moved.get_center_of_mass()
            moved.positions = (moved.positions - centre) @ rotations[k * n_rotations + r].T + centre
            rotated.append(moved)
    return rotated


def rotation_invariance(
    energies: Callable[[Sequence[Atoms]], np.ndarray],
    molecules: Sequence[Atoms],
    n_rotations: int = 5,
    seed: int = 0,
) -> Dict[str, float]:
    """Mean and max |ΔE| (meV) between molecules and random rotations of them.

    Args:
        energies: molecules -> energies (eV), e.g. a SchNetPack model through
            :func:`~ase_qdf.benchmarks.models.spk_energies` or an ase-qdf file
            through :func:`ase_qdf.predict_energies`.
        molecules: the molecules.
        n_rotations: random rotations per molecule.
        seed: seed of the rotations.
    """
    reference = energies(molecules)
    rotated_energies = energies(rotated_copies(molecules, n_rotations, seed)).reshape(len(molecules), n_rotations)
    delta = np.abs(rotated_energies - reference[:, None]) * 1000.0
    return {
        "mean_abs_delta_meV": float(delta.mean()),
        "max_abs_delta_meV": float(delta.max()),
        "mean_abs_energy_eV": float(np.abs(reference).mean()),
        "n_molecules": len(molecules),
        "n_rotations": n_rotations,
    }


def main(argv: List[str] = None) -> Dict[str, float]:
    from .models import add_model_arguments, energy_function, finish, qm9_sample

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--subset", default="under14")
    parser.add_argument("--molecules", type=int, default=50)
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    energies, source = energy_function(args, parser)

    chosen = qm9_sample(args.subset, args.molecules)
    return finish(rotation_invariance(energies, chosen, args.rotations), args, source)


if __name__ == "__main__":
    main()
