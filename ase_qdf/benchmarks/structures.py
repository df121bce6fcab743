"""Test structures of any size: linear alkanes and random organic clusters."""

import numpy as np
from ase import Atoms

__all__ = ["linear_alkane", "alkane_with_atoms", "organic_cluster"]

CC, CH = 1.53, 1.09  # bond lengths (Å)
TETRAHEDRAL = np.deg2rad(109.47)


def linear_alkane(n_carbon: int) -> Atoms:
    """All-trans C_nH_(2n+2) with ideal bond lengths and tetrahedral angles."""
    if n_carbon < 1:
        raise ValueError("need at least one carbon")
    half = TETRAHEDRAL / 2
    dx, dz = CC * np.sin(half), CC * np.cos(half) / 2
    carbons = np.array([[k * dx, 0.0, dz if k % 2 else -dz] for k in range(n_carbon)])
    symbols, positions = ["C"] * n_carbon, list(carbons)
    for k, c in enumerate(carbons):
        outward = -1.0 if k % 2 == 0 else 1.0  # away from the chain axis
        # two hydrogens in the plane perpendicular to the zigzag plane
        for side in (-1.0, 1.0):
            direction = np.array([0.0, side * np.sin(half), outward * np.cos(half)])
            positions.append(c + CH * direction / np.linalg.norm(direction))
            symbols.append("H")
    # end caps along the chain axis
    positions.append(carbons[0] + CH * np.array([-np.sin(half), 0.0, -np.cos(half)]))
    positions.append(carbons[-1] + CH * np.array([np.sin(half), 0.0, (1 if (n_carbon - 1) % 2 else -1) * np.cos(half)]))
    symbols += ["H", "H"]
    return Atoms(symbols, positions=np.array(positions))


def alkane_with_atoms(n_atoms: int) -> Atoms:
    """The linear alkane with the number of atoms closest to ``n_atoms``."""
    return linear_alkane(max(1, round((n_atoms - 2) / 3)))


def organic_cluster(n_atoms: int, density: float = 0.1, jitter: float = 0.3, seed: int = 0) -> Atoms:
    """Random H/C/N/O atoms at an organic-liquid number density (atoms/Å^3).

    Atoms sit on a jittered cubic lattice (spacing ``density**(-1/3)``, 2.15 Å
    at 0.1/Å^3), so no two are closer than spacing - 2 * sqrt(3) * jitter.
    Not a molecule: a stress test of cost against size with realistic
    neighbour counts.
    """
    rng = np.random.default_rng(seed)
    spacing = density ** (-1.0 / 3.0)
    side = int(np.ceil(n_atoms ** (1.0 / 3.0)))
    lattice = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_atoms]
    positions = lattice * spacing + rng.uniform(-jitter, jitter, size=(n_atoms, 3))
    symbols = rng.choice(["H", "H", "C", "N", "O"], size=n_atoms)
    return Atoms(symbols, positions=positions)
