"""The fused normalised orbitals against the composed autograd basis."""

import pytest
import torch
from ase.build import molecule

import schnetpack as spk

from schnetpack_ext.nn.basis import gaussian_orbitals, normalised_orbitals
from schnetpack_ext.representation import QDF
from tests.schnetpack_ext.test_qdf_representation import build_model, converter


def random_pairs(rep, n_pairs=40, n_atoms=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    r_ij = torch.randn(n_pairs, 3, generator=generator, dtype=torch.float64) * 2.0
    r_ij[:n_atoms] = 0.0  # self pairs: grid points around the nucleus itself
    rows_j = torch.randint(0, 5, (n_pairs,), generator=generator)
    idx_j = torch.randint(0, n_atoms, (n_pairs,), generator=generator)
    return rep.grid_distances2(r_ij), rows_j, idx_j, n_atoms


def composed(rep, zeta_raw, d2, rows_j, idx_j, n_atoms):
    """phi / ||phi|| written as plain autograd operations (the dense formula)."""
    d, envelope, _, second_shell, mask = rep._radial_inputs(d2, rows_j)
    zeta = (rep.zeta_min + torch.nn.functional.softplus(zeta_raw))[rep.type_index[rows_j]]
    phi = (torch.exp(-zeta[:, :, None] * d2[:, None, :])
           * torch.where(second_shell[:, :, None], d[:, None, :], torch.ones_like(d)[:, None, :])
           * envelope[:, None, :] * mask[:, :, None])
    weights = rep.grid_weights.double()
    norm2 = phi.new_zeros(n_atoms, phi.shape[1]).index_add(0, idx_j, (phi * phi) @ weights)
    return phi * torch.where(norm2 > 0, norm2, 1.0).rsqrt()[idx_j][:, :, None] * (norm2 > 0)[idx_j][:, :, None]


def fused(rep, zeta_raw, d2, rows_j, idx_j, n_atoms):
    d, envelope, _, second_shell, mask = rep._radial_inputs(d2, rows_j)
    zeta = (rep.zeta_min + torch.nn.functional.softplus(zeta_raw))[rep.type_index[rows_j]]
    phi, _ = normalised_orbitals(zeta, d2, d, envelope, second_shell, mask, rep.grid_weights.double(),
                                 idx_j, n_atoms)
    return phi


@pytest.fixture
def rep():
    torch.manual_seed(1)
    rep = QDF(n_atom_basis=8, n_functional_layers=1, lebedev_order=7, n_radial=2).double()
    with torch.no_grad():
        rep.zeta_raw.add_(0.4 * torch.randn_like(rep.zeta_raw))
    return rep


def test_fused_orbitals_are_normalised_and_equal_the_composed_ones(rep):
    d2, rows_j, idx_j, n_atoms = random_pairs(rep)
    zeta_raw = rep.zeta_raw.detach()
    phi = fused(rep, zeta_raw, d2, rows_j, idx_j, n_atoms)
    torch.testing.assert_close(phi, composed(rep, zeta_raw, d2, rows_j, idx_j, n_atoms), rtol=1e-12, atol=1e-14)
    # every occupied orbital of every atom has unit norm over the molecule grid
    norm2 = torch.zeros(n_atoms, phi.shape[1], dtype=torch.float64).index_add(
        0, idx_j, (phi * phi) @ rep.grid_weights.double())
    occupied = norm2 > 0
    assert occupied.sum() > n_atoms
    torch.testing.assert_close(norm2[occupied], torch.ones_like(norm2[occupied]))


def test_fused_gradient_of_the_exponents(rep):
    d2, rows_j, idx_j, n_atoms = random_pairs(rep, seed=2)
    zeta_raw = rep.zeta_raw.detach().clone().requires_grad_(True)
    upstream = torch.randn(d2.shape[0], rep.orbital_mask.shape[1], d2.shape[1], dtype=torch.float64)
    (g_fused,) = torch.autograd.grad((fused(rep, zeta_raw, d2, rows_j, idx_j, n_atoms) * upstream).sum(), zeta_raw)
    (g_ref,) = torch.autograd.grad((composed(rep, zeta_raw, d2, rows_j, idx_j, n_atoms) * upstream).sum(), zeta_raw)
    assert g_ref.abs().max() > 1e-3
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(lambda z: fused(rep, z, d2, rows_j, idx_j, n_atoms), (zeta_raw,), fast_mode=True)


def test_unnormalised_orbitals_equal_the_basis_of_the_model(rep):
    d2, rows_j, _, _ = random_pairs(rep, seed=3)
    d, envelope, zeta, second_shell, mask = rep._radial_inputs(d2, rows_j)
    with torch.no_grad():
        torch.testing.assert_close(gaussian_orbitals(zeta, d2, d, envelope, second_shell, mask),
                                   rep.basis(d2, rows_j))
    with torch.enable_grad():
        torch.testing.assert_close(gaussian_orbitals(zeta, d2, d, envelope, second_shell, mask),
                                   rep.basis(d2, rows_j).detach())


def test_geometry_gradients_are_refused(rep):
    d2, rows_j, idx_j, n_atoms = random_pairs(rep)
    d2.requires_grad_(True)
    d, envelope, zeta, second_shell, mask = rep._radial_inputs(d2, rows_j)
    with pytest.raises(ValueError, match="geometry"):
        normalised_orbitals(zeta, d2, d, envelope, second_shell, mask, rep.grid_weights.double(), idx_j, n_atoms)


def test_training_gradients_equal_those_of_the_composed_path():
    # positions that need a gradient (forces) take the composed basis, others the fused
    # one: the gradients of every parameter must agree
    torch.manual_seed(4)
    rep = QDF(n_atom_basis=16, activation="relu", lebedev_order=5, n_radial=1)
    with torch.no_grad():
        rep.zeta_raw.add_(0.3 * torch.randn_like(rep.zeta_raw))
    model = build_model(rep)
    batch = converter(rep.cutoff)([molecule("CH3CH2OH"), molecule("HCN")])
    gradients = []
    for positions_grad in (False, True):
        inputs = {k: v.clone() for k, v in batch.items()}
        inputs[spk.properties.R].requires_grad_(positions_grad)
        inputs = spk.atomistic.PairwiseDistances()(inputs)
        model.zero_grad()
        out = rep(inputs)
        loss = out["scalar_representation"].pow(2).sum() + out["density"].pow(2).sum()
        loss.backward()
        gradients.append({name: p.grad.clone() for name, p in rep.named_parameters()})
    assert gradients[0]["zeta_raw"].abs().max() > 0
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], rtol=1e-9, atol=1e-11)
