"""Radial Gaussian atomic orbitals on atom-centred grids, normalised over the molecule.

The QDF basis of atom ``j`` on the grid points of atom ``i`` (one row per pair) is

    phi = d^(q-1) exp(-zeta d^2) * envelope(d),    d = |r - R_j|,

normalised per orbital over the whole molecule grid (``sum_g w phi^2 = 1``, summed
over the pairs of atom ``j``). Written as a chain of autograd operations this is
about 30 passes over the (pairs x orbitals x points) tensors per training step,
the largest tensors of the model. :func:`normalised_orbitals` computes the same
values with one fused backward pass for the exponents, the only inputs that need
a gradient in training without forces (the positions then need none).

References:
    .. [#qdf] Tsubaki, Mizoguchi. Quantum deep field: data-driven wave function,
       electron density generation, and atomization energy prediction and
       extrapolation with machine learning. Phys. Rev. Lett. 125, 206401 (2020).
"""

import torch

__all__ = ["gaussian_orbitals", "normalised_orbitals"]


def gaussian_orbitals(zeta, d2, d, envelope, second_shell, mask) -> torch.Tensor:
    """Unnormalised orbitals ``d^(q-1) exp(-zeta d^2) envelope`` without autograd.

    Two (P, O, G) buffers, updated in place.

    Args:
        zeta: (P, O) exponent of every orbital slot of atom j, per pair (Å^-2).
        d2: (P, G) squared distances of the grid points from atom j (Å^2).
        d: (P, G) the distances (Å).
        envelope: (P, G) smooth cutoff switch (0 on the nucleus and beyond the cutoff).
        second_shell: (P, O) bool, slot has q = 2.
        mask: (P, O) 1 where the slot holds an orbital, else 0.

    Returns:
        (P, O, G) orbital values, points last.
    """
    radial = torch.mul(zeta[:, :, None], d2[:, None, :]).neg_().exp_()
    shells = torch.where(second_shell[:, :, None], (envelope * d)[:, None, :], envelope[:, None, :])
    return radial.mul_(shells.mul_(mask[:, :, None]))


class _NormalisedOrbitals(torch.autograd.Function):
    """Orbitals normalised over the molecule grid; gradient for ``zeta`` only."""

    @staticmethod
    def forward(ctx, zeta, d2, d, envelope, second_shell, mask, weights, idx_j, n_atoms):
        with torch.no_grad():
            phi = gaussian_orbitals(zeta, d2, d, envelope, second_shell, mask)
            phi2 = phi * phi
            norm2 = phi2.new_zeros(n_atoms, phi.shape[1]).index_add_(0, idx_j, phi2 @ weights)
            inv_norm = torch.where(norm2 > 0, torch.rsqrt(torch.where(norm2 > 0, norm2, 1.0)), 0.0)
            scale = inv_norm[idx_j]  # (P, O)
            phi.mul_(scale[:, :, None])
            needs_grad = ctx.needs_input_grad[0]
            if needs_grad:
                # sum_g w d^2 phi_n^2 per pair and slot, for the normalisation's share
                # of the exponent's gradient
                moment = (phi2.mul_((weights[None, :] * d2)[:, None, :])).sum(-1) * scale * scale
                ctx.save_for_backward(phi, d2, moment, idx_j)
                ctx.n_atoms = n_atoms
        ctx.mark_non_differentiable(inv_norm)
        return phi, inv_norm

    @staticmethod
    def backward(ctx, grad_phi, grad_inv_norm):
        # phi_n = phi s_j, s_j = (sum_{pairs of j} sum_g w phi^2)^(-1/2), dphi/dzeta = -d^2 phi:
        # dL/dzeta = -(sum_g G phi_n d^2 - K_j sum_g w d^2 phi_n^2), K_j = sum_{pairs of j} sum_g G phi_n
        phi, d2, moment, idx_j = ctx.saved_tensors
        product = grad_phi * phi
        per_pair = product.sum(-1)
        k = per_pair.new_zeros(ctx.n_atoms, per_pair.shape[1]).index_add_(0, idx_j, per_pair)
        first = product.mul_(d2[:, None, :]).sum(-1)
        grad_zeta = k[idx_j].mul_(moment).sub_(first)
        return grad_zeta, None, None, None, None, None, None, None, None


def normalised_orbitals(zeta, d2, d, envelope, second_shell, mask, weights, idx_j, n_atoms: int):
    """Orbitals of atom j on the grid of atom i, normalised over the molecule grid.

    The exponents ``zeta`` may need a gradient (training); the geometry may not
    (forces take the composed autograd path of :class:`~schnetpack_ext.representation.QDF`).

    Args:
        zeta, d2, d, envelope, second_shell, mask: as :func:`gaussian_orbitals`.
        weights: (G,) quadrature weights of the grid points (Å^3).
        idx_j: (P,) atom j of every pair.
        n_atoms: number of atoms.

    Returns:
        phi_n (P, O, G), the normalised orbitals, and inv_norm (n_atoms, O), the
        inverse norms (0 for empty slots).
    """
    if d2.requires_grad or d.requires_grad or envelope.requires_grad:
        raise ValueError("normalised_orbitals has no gradient for the geometry; "
                         "use the composed basis for forces")
    return _NormalisedOrbitals.apply(zeta, d2, d, envelope, second_shell, mask, weights, idx_j, n_atoms)
