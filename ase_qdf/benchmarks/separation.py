"""Size consistency: is the energy of two distant molecules the sum of their energies?

For pairs of QM9 molecules A, B, places B ``--distance`` Å away from A (beyond every
cutoff) and reports |E(A + B) - E(A) - E(B)|. A model whose energy is a sum of local
terms (SchNet, PaiNN, QDF with ``normalisation: local``) gives zero; the paper's QDF
normalises its orbitals over the whole molecule, which couples A and B at any distance.
Also reports E(A + A) - 2 E(A) (two copies of one molecule), which the molecule-wide
normalisation leaves unchanged. Usage::

    qdf benchmark separation --model ase_qdf/models/qdf_qm9.pt --pairs 100
    qdf benchmark separation --experiment schnet_qm9_under14
"""

import argparse
from typing import Callable, Dict, List, Sequence

import numpy as np
from ase import Atoms


__all__ = ["separated", "separation_errors", "main"]


def separated(a: Atoms, b: Atoms, distance: float) -> Atoms:
    """A and a copy of B whose centre lies ``distance`` Å from A's along x, without overlap.

    Args:
        a, b: the molecules (not modified).
        distance: gap (Å) between A's largest and B's smallest x coordinate.
    """
    moved = b.copy()
    shift = a.positions[:, 0].max() - moved.positions[:, 0].min() + distance
    moved.positions -= moved.get_center_of_mass() * [0, 1, 1] - a.get_center_of_mass() * [0, 1, 1]
    moved.positions[:, 0] += shift
    return a + moved


def separation_errors(
    energies: Callable[[Sequence[Atoms]], np.ndarray],
    molecules: Sequence[Atoms],
    n_pairs: int = 100,
    distance: float = 50.0,
    seed: int = 0,
) -> Dict[str, float]:
    """E(A + B) - E(A) - E(B) (meV) for random pairs of different molecules, and E(A + A) - 2 E(A).

    Args:
        energies: molecules -> energies (eV).
        molecules: the pool the pairs are drawn from (at least two).
        n_pairs: number of pairs (A, B), A and B different molecules.
        distance: gap between the two molecules (Å).
        seed: seed of the pairs.
    """
    if len(molecules) < 2:
        raise ValueError("need at least two molecules to form pairs")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(molecules), n_pairs)
    second = (first + rng.integers(1, len(molecules), n_pairs)) % len(molecules)  # never A itself
    single = energies(molecules)
    pairs = energies([separated(molecules[i], molecules[j], distance) for i, j in zip(first, second)])
    copies = energies([separated(molecules[i], molecules[i], distance) for i in first])
    delta = (pairs - single[first] - single[second]) * 1000.0
    delta_copies = (copies - 2.0 * single[first]) * 1000.0
    return {
        "mean_abs_delta_meV": float(np.abs(delta).mean()),
        "max_abs_delta_meV": float(np.abs(delta).max()),
        "mean_signed_delta_meV": float(delta.mean()),
        "copies_mean_abs_delta_meV": float(np.abs(delta_copies).mean()),
        "n_pairs": int(n_pairs),
        "distance_A": float(distance),
    }


def main(argv: List[str] = None) -> Dict[str, float]:
    from .models import add_model_arguments, energy_function, finish, qm9_sample

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--subset", default="under14")
    parser.add_argument("--molecules", type=int, default=200, help="pool of random molecules the pairs come from")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--distance", type=float, default=50.0, help="gap between the molecules (Å)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    energies, source = energy_function(args, parser)

    chosen = qm9_sample(args.subset, args.molecules)
    return finish(separation_errors(energies, chosen, args.pairs, args.distance), args, source)


if __name__ == "__main__":
    main()
