"""Full-space molecular integration grids (Becke partition of atom-centred grids).

The QDF model's own grid covers only small balls (0.75 Å) around the atoms. To
integrate a field over *all* space, e.g. to normalise the electron density to
the electron count, every atom gets a spherical product grid (Becke-mapped
Gauss-Chebyshev radial rule x Lebedev angular rule) whose points are weighted
by Becke's fuzzy-cell partition of unity, so that the atomic grids add up to
one molecular grid: ``∫ f(r) dr ≈ sum_g w_g f(r_g)`` with ``w_g`` in Å^3.

Linear cost: the partition at a point uses only the ``max_neighbours`` atoms
nearest to it within ``neighbour_radius``. That set is a function of the point
alone, so the partition of unity (and hence exactness in the limit of fine
grids) is kept; only atoms far from a point, whose cells do not reach it, are
left out.

References:
    .. [#becke] Becke. A multicenter numerical integration scheme for
       polyatomic molecules. J. Chem. Phys. 88, 2547 (1988).
    .. [#lebedev] Lebedev, Laikov. A quadrature formula for the sphere of the
       131st algebraic order of accuracy. Doklady Mathematics 59, 477 (1999).
    .. [#qdf] Tsubaki, Mizoguchi. Phys. Rev. Lett. 125, 206401 (2020).
"""

from typing import Tuple

import numpy as np
from scipy.spatial import cKDTree

from schnetpack_ext.nn.grids import lebedev_rule_of_order

__all__ = ["becke_radial_rule", "becke_partition", "molecular_grid"]


def becke_radial_rule(n_radial: int = 30, r_mid: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Radial rule for ``∫_0^∞ f(r) r^2 dr``: Gauss-Chebyshev (2nd kind), Becke map.

    ``r = r_mid (1 + x) / (1 - x)`` maps ``x ∈ (-1, 1)`` onto ``(0, ∞)``, with half
    of the points inside ``r_mid``.

    Args:
        n_radial: number of radial points.
        r_mid: radius (Å) that splits the points in half.

    Returns:
        radii (Å) and weights (Å^3, including ``r^2``).
    """
    i = np.arange(1, n_radial + 1)
    t = i * np.pi / (n_radial + 1)
    x = np.cos(t)
    # Chebyshev 2nd kind: ∫ g(x) sqrt(1 - x^2) dx ≈ sum w_i g(x_i)
    w_cheb = np.pi / (n_radial + 1) * np.sin(t) ** 2
    r = r_mid * (1.0 + x) / (1.0 - x)
    dr_dx = 2.0 * r_mid / (1.0 - x) ** 2
    w = w_cheb / np.sqrt(1.0 - x**2) * dr_dx * r**2
    return r, w


def _becke_step(mu: np.ndarray) -> np.ndarray:
    for _ in range(3):
        mu = 1.5 * mu - 0.5 * mu**3
    return 0.5 * (1.0 - mu)


def becke_partition(
    points: np.ndarray,
    positions: np.ndarray,
    owner: np.ndarray,
    neighbour_radius: float = 6.0,
    max_neighbours: int = 16,
    chunk_size: int = 8192,
) -> np.ndarray:
    """Becke fuzzy-cell weight of atom ``owner[g]`` at every point ``g``.

    Args:
        points: (n, 3) points (Å).
        positions: (n_atoms, 3) atom positions (Å).
        owner: (n,) atom whose cell weight is wanted.
        neighbour_radius: atoms farther than this from a point are left out (Å).
        max_neighbours: at most this many nearest atoms enter the partition.
        chunk_size: points per vectorised block (bounds memory).

    Returns:
        (n,) weights in [0, 1]; 0 where the owner is not among the kept atoms.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n_atoms = len(positions)
    k = min(max_neighbours, n_atoms)
    tree = cKDTree(positions)
    out = np.zeros(len(points))
    for start in range(0, len(points), chunk_size):
        pts = points[start:start + chunk_size]
        dist, idx = tree.query(pts, k=k, distance_upper_bound=neighbour_radius)
        dist, idx = dist.reshape(len(pts), k), idx.reshape(len(pts), k)
        valid = idx < n_atoms
        safe = np.where(valid, idx, 0)
        r_ab = np.linalg.norm(positions[safe][:, :, None] - positions[safe][:, None, :], axis=-1)
        same = np.eye(k, dtype=bool)[None]
        dist = np.where(valid, dist, 0.0)
        mu = (dist[:, :, None] - dist[:, None, :]) / np.where(same, 1.0, np.maximum(r_ab, 1e-12))
        s = np.where(same | ~valid[:, None, :], 1.0, _becke_step(np.clip(mu, -1.0, 1.0)))
        cell = np.prod(s, axis=2) * valid  # (n, k) unnormalised cell functions
        mine = (idx == owner[start:start + chunk_size, None]) & valid
        total = cell.sum(1)
        out[start:start + chunk_size] = np.where(total > 0, (cell * mine).sum(1) / np.where(total > 0, total, 1.0), 0.0)
    return out


def molecular_grid(
    positions: np.ndarray,
    n_radial: int = 30,
    lebedev_order: int = 17,
    r_mid: float = 1.0,
    neighbour_radius: float = 6.0,
    max_neighbours: int = 16,
) -> Tuple[np.ndarray, np.ndarray]:
    """Becke-partitioned molecular grid for integrals over all space.

    Radial shells beyond ``neighbour_radius`` are dropped (their partition
    weight is zero), so functions must vanish farther than that from all
    atoms (true for the QDF orbitals, which are cut off at ``basis_cutoff``).

    Args:
        positions: (n_atoms, 3) atom positions (Å).
        n_radial: radial points per atom.
        lebedev_order: order of the angular Lebedev rule.
        r_mid: radial mapping parameter (Å), see :func:`becke_radial_rule`.
        neighbour_radius: see :func:`becke_partition` (Å).
        max_neighbours: see :func:`becke_partition`.

    Returns:
        points (n, 3) in Å and weights (n,) in Å^3 (zero-weight points removed).
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    r, w_r = becke_radial_rule(n_radial, r_mid)
    keep = r <= neighbour_radius
    r, w_r = r[keep], w_r[keep]
    directions, w_ang = lebedev_rule_of_order(lebedev_order)
    offsets = (r[:, None, None] * directions.T[None]).reshape(-1, 3)
    w_atom = (w_r[:, None] * w_ang[None, :]).reshape(-1)
    n_atoms, n_per_atom = len(positions), len(offsets)
    points = (positions[:, None, :] + offsets[None]).reshape(-1, 3)
    owner = np.repeat(np.arange(n_atoms), n_per_atom)
    weights = np.tile(w_atom, n_atoms) * becke_partition(
        points, positions, owner, neighbour_radius, max_neighbours
    )
    nonzero = weights > 0
    return points[nonzero], weights[nonzero]
