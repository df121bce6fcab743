"""Atom-centred quadrature grids on which the QDF fields are evaluated.

A grid is a set of offsets ``s`` (Å) placed around every atom, with a weight per
offset. Sums over grid points approximate integrals over space:
``sum_g w_g f(R_A + s_g) ≈ ∫_{|s| <= radius} f(R_A + s) ds / v0``, where ``v0`` is
the volume of one point of the original (paper) grid, so that both grids give
features of the same scale.

References:
    .. [#qdf] Tsubaki, Mizoguchi. Quantum deep field: data-driven wave function,
       electron density generation, and atomization energy prediction and
       extrapolation with machine learning. Phys. Rev. Lett. 125, 206401 (2020).
    .. [#lebedev] Lebedev, Laikov. A quadrature formula for the sphere of the 131st
       algebraic order of accuracy. Doklady Mathematics 59, 477 (1999).
"""

from typing import Tuple

import numpy as np
import torch
from scipy.integrate import lebedev_rule

__all__ = ["paper_grid", "lebedev_rule_of_order", "lebedev_grid", "build_grid", "PAPER_POINT_VOLUME"]

#: spacing of the original cubic grid (Å)
PAPER_SPACING = 0.3
#: volume represented by one point of the original grid (Å^3)
PAPER_POINT_VOLUME = PAPER_SPACING**3


def paper_grid(radius: float = 0.75) -> Tuple[torch.Tensor, torch.Tensor]:
    """The original axis-aligned cubic grid: 56 points per atom, unit weights.

    The offsets are {-0.75, -0.45, ..., 0.75}^3 restricted to ``|s| <= radius``.
    Not rotation invariant; kept for exact reproduction of the paper.

    Returns:
        offsets (n_points, 3) in Å and weights (n_points,).
    """
    axis = np.arange(-0.75, 0.75 + 1e-9, PAPER_SPACING)
    offsets = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    offsets = offsets[np.linalg.norm(offsets, axis=1) <= radius + 1e-9]
    weights = np.ones(len(offsets))
    return torch.tensor(offsets), torch.tensor(weights)


def lebedev_rule_of_order(order: int) -> Tuple[np.ndarray, np.ndarray]:
    """Unit directions (3, n) and weights (n,) of the Lebedev rule of ``order``.

    :func:`scipy.integrate.lebedev_rule` with a ``ValueError`` (scipy raises
    ``NotImplementedError``) for an order that has no rule, so callers see one
    error type for a bad order.
    """
    try:
        return lebedev_rule(order)
    except NotImplementedError as err:
        raise ValueError(f"lebedev_order={order} is not a Lebedev rule: {err}") from None


def lebedev_grid(
    radius: float = 0.75, n_radial: int = 3, lebedev_order: int = 11
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Spherical product grid: Gauss-Legendre shells x a Lebedev angular rule.

    The angular rule integrates spherical harmonics up to degree
    ``lebedev_order`` exactly, so the quadrature of a smooth field hardly
    depends on the orientation of the molecule. No point sits at the atom
    itself (Gauss-Legendre nodes are interior), which keeps ``d = 0`` out of
    the basis functions.

    Args:
        radius: radius of the ball around every atom (Å).
        n_radial: number of radial shells.
        lebedev_order: algebraic order of the Lebedev rule (3, 5, 7, ... see
            :func:`scipy.integrate.lebedev_rule`).

    Returns:
        offsets (n_radial * n_angular, 3) in Å and weights in units of
        :data:`PAPER_POINT_VOLUME`.
    """
    x, w = np.polynomial.legendre.leggauss(n_radial)
    r = 0.5 * radius * (x + 1.0)
    # ∫_0^R f(r) r^2 dr with the Jacobian of [-1, 1] -> [0, R]
    w_radial = 0.5 * radius * w * r**2
    directions, w_angular = lebedev_rule_of_order(lebedev_order)
    offsets = (r[:, None, None] * directions.T[None, :, :]).reshape(-1, 3)
    weights = (w_radial[:, None] * w_angular[None, :]).reshape(-1) / PAPER_POINT_VOLUME
    return torch.tensor(offsets), torch.tensor(weights)


def build_grid(
    kind: str = "lebedev",
    radius: float = 0.75,
    n_radial: int = 3,
    lebedev_order: int = 11,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Grid by name: ``"lebedev"`` (rotation invariant, default) or ``"paper"``.

    Args:
        kind: grid name.
        radius: radius of the ball around every atom (Å).
        n_radial: radial shells (lebedev only).
        lebedev_order: angular order (lebedev only).
    """
    if kind == "paper":
        return paper_grid(radius)
    if kind == "lebedev":
        return lebedev_grid(radius, n_radial, lebedev_order)
    raise ValueError(f"unknown grid {kind!r}; choose 'lebedev' or 'paper'")
