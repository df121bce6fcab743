"""Slow, dense, independent NumPy implementation of QDF_SPEC §1 for tests.

Written literally from the formulas (full grid x full orbital matrices, no
cutoff, explicit coefficient column normalisation), for tiny molecules only.
"""

import itertools

import numpy as np

ORBITALS = {1: [1] * 4}
for z in (6, 7, 8, 9):
    ORBITALS[z] = [1] * 6 + [2] * 4 + [2] * 4
# running orbital-type index, in element order H, C, N, O, F
TYPE_START = {}
_n = 0
for z in sorted(ORBITALS):
    TYPE_START[z] = _n
    _n += len(ORBITALS[z])


def paper_offsets():
    axis = [-0.75, -0.45, -0.15, 0.15, 0.45, 0.75]
    pts = [p for p in itertools.product(axis, repeat=3) if np.linalg.norm(p) <= 0.75 + 1e-9]
    return np.array(pts, dtype=float)


def qdf_dense(numbers, positions, zeta, coefficients, layers, offsets=None, weights=None,
              orbital_scale=1.0, normalisation="molecule", local_cutoff=None, local_width=None):
    """Return per-atom features, density, external potential and grid points.

    Args:
        numbers: (n,) atomic numbers.
        positions: (n, 3) Å.
        zeta: (n_types,) exponents.
        coefficients: (n_types, D).
        layers: list of (W, b) of the ReLU functional MLP, W of shape (D_out, D_in).
        offsets, weights: grid per atom (paper grid and unit weights by default).
        orbital_scale: factor on psi at the input of the functional (not in the density).
        normalisation: "molecule" (the paper) or "local": the electron-count scale of
            column k on the grid of atom A is sum_B s_AB Z_B / (D sum_B s_AB
            sum_{r in B} w psi_k(r)^2), s_AB the cosine switch of |R_A - R_B|
            (``local_cutoff``, ``local_width``).
    """
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=float)
    if offsets is None:
        offsets = paper_offsets()
    if weights is None:
        weights = np.ones(len(offsets))
    grid = np.concatenate([r + offsets for r in positions])  # (n * G, 3)
    w = np.tile(weights, len(numbers))
    owner = np.repeat(np.arange(len(numbers)), len(offsets))

    centres, qs, types = molecule_orbitals(numbers, positions)

    d = np.linalg.norm(grid[:, None, :] - centres[None, :, :], axis=-1)  # (Ng, M)
    phi = d ** (qs - 1) * np.exp(-zeta[types] * d**2)
    phi[d == 0] = 0.0
    phi = phi / np.sqrt((w[:, None] * phi**2).sum(0))  # basis normalisation

    C = coefficients[types]  # (M, D)
    C = C / np.linalg.norm(C, axis=0)  # column normalisation
    psi = phi @ C  # (Ng, D)
    n_electrons = numbers.sum()
    D = C.shape[1]
    if normalisation == "molecule":
        psi = psi * np.sqrt(n_electrons / D / (w[:, None] * psi**2).sum(0))
    else:
        per_atom = np.zeros((len(numbers), D))
        np.add.at(per_atom, owner, w[:, None] * psi**2)
        s = _switch(np.linalg.norm(positions[:, None] - positions[None], axis=-1), local_cutoff, local_width)
        scale = np.sqrt((s @ numbers)[:, None] / D / (s @ per_atom))  # (n_atoms, D)
        psi = psi * scale[owner]

    h = orbital_scale * psi
    for W, b in layers:
        h = np.maximum(h @ W.T + b, 0.0)
    features = np.zeros((len(numbers), D))
    np.add.at(features, owner, w[:, None] * h)

    density = (psi**2).sum(1)
    potential = -(numbers[None, :] * np.exp(-np.linalg.norm(grid[:, None] - positions[None], axis=-1) ** 2)).sum(1)
    return features, density, potential, grid


def molecule_orbitals(numbers, positions):
    """The molecule's orbitals as arrays: centre (M, 3), principal number q (M,), type (M,)."""
    centres, qs, types = [], [], []
    for a, z in enumerate(numbers):
        for k, q in enumerate(ORBITALS[int(z)]):
            centres.append(positions[a])
            qs.append(q)
            types.append(TYPE_START[int(z)] + k)
    return np.array(centres), np.array(qs), np.array(types)


def _switch(d, cutoff, width):
    x = np.clip((d - (cutoff - width)) / width, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def qdf_dense_density(numbers, positions, zeta, coefficients, points, offsets, weights,
                      basis_cutoff=4.0, switch_width=1.0, norm_points=None, norm_weights=None):
    """Density sum_k psi_k(r)^2 at arbitrary points, literally from QDF_SPEC §1.

    The basis is normalised on the model grid (``offsets``, ``weights`` around every
    atom) with the smooth cutoff switch of the representation; the coefficient
    columns are normalised, then rescaled so that sum_r w psi_k^2 = N_e / D on
    (``norm_points``, ``norm_weights``), by default the model grid itself.
    """
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=float)
    grid = np.concatenate([r + offsets for r in positions])
    w = np.tile(weights, len(numbers))
    centres, qs, types = molecule_orbitals(numbers, positions)

    def basis(pts):
        d = np.linalg.norm(pts[:, None, :] - centres[None, :, :], axis=-1)
        phi = d ** (qs - 1) * np.exp(-zeta[types] * d**2) * _switch(d, basis_cutoff, switch_width)
        phi[d == 0] = 0.0
        return phi

    norm = np.sqrt((w[:, None] * basis(grid) ** 2).sum(0))
    C = coefficients[types]
    C = C / np.linalg.norm(C, axis=0)
    if norm_points is None:
        norm_points, norm_weights = grid, w
    psi_norm = (basis(np.asarray(norm_points)) / norm) @ C
    scale = np.sqrt(numbers.sum() / C.shape[1] / (np.asarray(norm_weights)[:, None] * psi_norm**2).sum(0))
    psi = (basis(np.asarray(points)) / norm) @ C * scale
    return (psi**2).sum(1)
