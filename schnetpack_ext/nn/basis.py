"""Radial Gaussian atomic orbitals on atom-centred grids, normalised over the molecule.

The QDF basis of atom ``j`` on the grid points of atom ``i`` (one row per pair) is::

    phi = d^(q-1) exp(-zeta d^2) * envelope(d),    d = |r - R_j|

normalised per orbital over the whole molecule grid (``sum_g w phi^2 = 1``, summed
over the pairs of atom ``j``). Written as a chain of autograd operations this is
about 30 passes over the (pairs x orbitals x points) tensors per training step,
the largest tensors of the model. :func:`normalised_orbitals` computes the same
values with one fused backward pass, for the exponents (training) and for the
geometry (forces).

References:
    .. [#qdf] Tsubaki, Mizoguchi. Quantum deep field: data-driven wave function,
       electron density generation, and atomization energy prediction and
       extrapolation with machine learning. Phys. Rev. Lett. 125, 206401 (2020).
"""

import torch
from torch.autograd.function import once_differentiable

__all__ = ["gaussian_orbitals", "inverse_norm", "normalised_orbitals"]


def gaussian_orbitals(zeta, d2, shells, second_shell, mask) -> torch.Tensor:
    """Unnormalised orbitals ``d^(q-1) exp(-zeta d^2) envelope``.

    Without a gradient to track, two (P, O, G) buffers are updated in place;
    otherwise the same values as differentiable operations.

    Args:
        zeta: (P, O) exponent of every orbital slot of atom j, per pair (Å^-2).
        d2: (P, G) squared distances of the grid points from atom j (Å^2).
        shells: (P, 2, G) ``envelope`` and ``d * envelope``, the factors of q = 1 and
            q = 2 orbitals (the envelope is 0 on the nucleus and beyond the cutoff).
        second_shell: (P, O) bool, slot has q = 2.
        mask: (P, O) 1 where the slot holds an orbital, else 0.

    Returns:
        (P, O, G) orbital values, points last.
    """
    factors = torch.where(second_shell[:, :, None], shells[:, None, 1, :], shells[:, None, 0, :])
    if torch.is_grad_enabled() and (zeta.requires_grad or d2.requires_grad or shells.requires_grad):
        return torch.exp(-zeta[:, :, None] * d2[:, None, :]) * factors * mask[:, :, None]
    radial = torch.mul(zeta[:, :, None], d2[:, None, :]).neg_().exp_()
    return radial.mul_(factors.mul_(mask[:, :, None]))


def inverse_norm(norm2: torch.Tensor) -> torch.Tensor:
    """``norm2^(-1/2)``, 0 where the norm is 0 (empty slots), with finite gradients."""
    occupied = norm2 > 0
    return torch.where(occupied, torch.rsqrt(torch.where(occupied, norm2, 1.0)), 0.0)


class _NormalisedOrbitals(torch.autograd.Function):
    """Orbitals normalised over the molecule grid, with one fused backward pass."""

    @staticmethod
    def forward(ctx, zeta, d2, shells, second_shell, mask, weights, idx_j, n_atoms):
        with torch.no_grad():
            phi = gaussian_orbitals(zeta, d2, shells, second_shell, mask)
            phi2 = phi * phi
            norm2 = phi2.new_zeros(n_atoms, phi.shape[1]).index_add_(0, idx_j, phi2 @ weights)
            inv_norm = inverse_norm(norm2)
            scale = inv_norm[idx_j]  # (P, O)
            phi.mul_(scale[:, :, None])
            if any(ctx.needs_input_grad[:3]):
                ctx.save_for_backward(phi, zeta, d2, scale, second_shell, mask, weights, idx_j)
                ctx.n_atoms = n_atoms
        ctx.mark_non_differentiable(inv_norm)
        return phi, inv_norm

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_phi, grad_inv_norm):
        # phi_n = phi s_j with s_j = (sum_{pairs of j} sum_g w phi^2)^(-1/2), so
        # dL/dphi = s_j (G - K_j w phi_n), K_j = sum_{pairs of j} sum_g G phi_n.
        # With phi = exp(-zeta d2) f_q(d2) (f_q the shell factor):
        #   dL/dzeta = -sum_g (G - K w phi_n) phi_n d2
        #   dL/dd2 (through the exponential) = -sum_o zeta (G - K w phi_n) phi_n
        #   dL/df_q = sum_{o of shell q} s (G - K w phi_n) exp(-zeta d2)
        phi, zeta, d2, scale, second_shell, mask, weights, idx_j = ctx.saved_tensors
        need_zeta, need_d2, need_shells = ctx.needs_input_grad[:3]
        per_pair = (grad_phi * phi).sum(-1)
        k = per_pair.new_zeros(ctx.n_atoms, per_pair.shape[1]).index_add_(0, idx_j, per_pair)[idx_j]
        # R = G - K w phi_n, then R phi_n
        residual = torch.addcmul(grad_phi, phi, k[:, :, None] * weights, value=-1.0)
        grad_zeta = grad_d2 = grad_shells = None
        if need_shells:
            radial = torch.mul(zeta[:, :, None], d2[:, None, :]).neg_().exp_()
            scale_mask = scale * mask
            shell_weights = torch.stack([scale_mask * ~second_shell, scale_mask * second_shell], 1)  # (P, 2, O)
            grad_shells = torch.bmm(shell_weights, radial.mul_(residual))
        product = residual.mul_(phi)
        if need_d2:
            grad_d2 = -torch.bmm(zeta[:, None, :], product)[:, 0, :]
        if need_zeta:
            grad_zeta = -product.mul_(d2[:, None, :]).sum(-1)
        return grad_zeta, grad_d2, grad_shells, None, None, None, None, None


def normalised_orbitals(zeta, d2, shells, second_shell, mask, weights, idx_j, n_atoms: int,
                        twice_differentiable: bool = False):
    """Orbitals of atom j on the grid of atom i, normalised over the molecule grid.

    Differentiable in the exponents (training) and in the geometry (forces,
    through ``d2`` and ``shells``), with a fused backward pass that can be taken
    once. Training on forces differentiates the forces again: with
    ``twice_differentiable`` the same values come from composed autograd
    operations instead.

    Args:
        zeta, d2, shells, second_shell, mask: as :func:`gaussian_orbitals`.
        weights: (G,) quadrature weights of the grid points (Å^3).
        idx_j: (P,) atom j of every pair.
        n_atoms: number of atoms.
        twice_differentiable: build a graph that supports second derivatives.

    Returns:
        phi_n (P, O, G), the normalised orbitals, and inv_norm (n_atoms, O), the
        inverse norms (0 for empty slots).
    """
    if not twice_differentiable:
        return _NormalisedOrbitals.apply(zeta, d2, shells, second_shell, mask, weights, idx_j, n_atoms)
    phi = gaussian_orbitals(zeta, d2, shells, second_shell, mask)
    inv_norm = inverse_norm(phi.new_zeros(n_atoms, phi.shape[1]).index_add(0, idx_j, (phi * phi) @ weights))
    return phi * inv_norm[idx_j][:, :, None], inv_norm
