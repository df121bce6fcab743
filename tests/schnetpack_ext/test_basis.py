"""The fused normalised orbitals against the composed autograd formula."""

import pytest
import torch
from ase.build import molecule

import schnetpack as spk

import schnetpack_ext.representation.qdf as qdf_module
from schnetpack_ext.nn.basis import gaussian_orbitals, normalised_orbitals
from schnetpack_ext.representation import QDF
from schnetpack_ext.representation.qdf import smooth_switch
from tests.schnetpack_ext.test_qdf_representation import build_model, converter


def random_pairs(rep, n_pairs=40, n_atoms=6, seed=0, requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    r_ij = torch.randn(n_pairs, 3, generator=generator, dtype=torch.float64) * 2.0
    r_ij[:n_atoms] = 0.0  # self pairs: grid points around the nucleus itself
    r_ij.requires_grad_(requires_grad)
    rows_j = torch.randint(0, 5, (n_pairs,), generator=generator)
    idx_j = torch.randint(0, n_atoms, (n_pairs,), generator=generator)
    return r_ij, rows_j, idx_j, n_atoms


def composed(rep, zeta_raw, d2, rows_j, idx_j, n_atoms):
    """phi / ||phi|| written as plain autograd operations (the dense formula)."""
    on_nucleus = d2 <= 0
    d = torch.where(on_nucleus, 0.0, torch.sqrt(torch.where(on_nucleus, 1.0, d2)))
    envelope = smooth_switch(d, rep.basis_cutoff, rep.switch_width) * ~on_nucleus
    zeta = (rep.zeta_min + torch.nn.functional.softplus(zeta_raw))[rep.type_index[rows_j]]
    second_shell = rep.second_shell[rows_j][:, :, None] > 0
    phi = (torch.exp(-zeta[:, :, None] * d2[:, None, :])
           * torch.where(second_shell, d[:, None, :], torch.ones_like(d)[:, None, :])
           * envelope[:, None, :] * rep.orbital_mask[rows_j][:, :, None])
    norm2 = phi.new_zeros(n_atoms, phi.shape[1]).index_add(0, idx_j, (phi * phi) @ rep.grid_weights.double())
    occupied = norm2 > 0
    return phi * (torch.where(occupied, norm2, 1.0).rsqrt() * occupied)[idx_j][:, :, None]


def fused(rep, zeta_raw, d2, rows_j, idx_j, n_atoms):
    shells, _, second_shell, mask = rep._radial_inputs(d2, rows_j)
    zeta = (rep.zeta_min + torch.nn.functional.softplus(zeta_raw))[rep.type_index[rows_j]]
    phi, _ = normalised_orbitals(zeta, d2, shells, second_shell, mask, rep.grid_weights.double(), idx_j, n_atoms)
    return phi


@pytest.fixture
def rep():
    torch.manual_seed(1)
    rep = QDF(n_atom_basis=8, n_functional_layers=1, lebedev_order=7, n_radial=2).double()
    with torch.no_grad():
        rep.zeta_raw.add_(0.4 * torch.randn_like(rep.zeta_raw))
    return rep


def test_fused_orbitals_are_normalised_and_equal_the_composed_ones(rep):
    r_ij, rows_j, idx_j, n_atoms = random_pairs(rep)
    d2, zeta_raw = rep.grid_distances2(r_ij), rep.zeta_raw.detach()
    phi = fused(rep, zeta_raw, d2, rows_j, idx_j, n_atoms)
    torch.testing.assert_close(phi, composed(rep, zeta_raw, d2, rows_j, idx_j, n_atoms), rtol=1e-12, atol=1e-14)
    # every occupied orbital of every atom has unit norm over the molecule grid
    norm2 = torch.zeros(n_atoms, phi.shape[1], dtype=torch.float64).index_add(
        0, idx_j, (phi * phi) @ rep.grid_weights.double())
    occupied = norm2 > 0
    assert occupied.sum() > n_atoms
    torch.testing.assert_close(norm2[occupied], torch.ones_like(norm2[occupied]))


@pytest.mark.parametrize("geometry", [False, True], ids=["training", "forces"])
def test_fused_gradients_equal_the_composed_ones(rep, geometry):
    r_ij, rows_j, idx_j, n_atoms = random_pairs(rep, seed=2, requires_grad=geometry)
    zeta_raw = rep.zeta_raw.detach().clone().requires_grad_(True)
    inputs = (zeta_raw, r_ij) if geometry else (zeta_raw,)
    upstream = torch.randn(r_ij.shape[0], rep.orbital_mask.shape[1], rep.n_grid_points, dtype=torch.float64)

    def loss(orbitals):
        return (orbitals(rep, zeta_raw, rep.grid_distances2(r_ij), rows_j, idx_j, n_atoms) * upstream).sum()

    for g_fused, g_ref in zip(torch.autograd.grad(loss(fused), inputs), torch.autograd.grad(loss(composed), inputs)):
        assert g_ref.abs().max() > 1e-3
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda *x: fused(rep, x[0], rep.grid_distances2(x[1] if geometry else r_ij), rows_j, idx_j, n_atoms),
        inputs, fast_mode=True)


def test_unnormalised_orbitals_equal_the_basis_of_the_model(rep):
    r_ij, rows_j, _, _ = random_pairs(rep, seed=3)
    d2 = rep.grid_distances2(r_ij)
    shells, zeta, second_shell, mask = rep._radial_inputs(d2, rows_j)
    expected = composed(rep, rep.zeta_raw.detach(), d2, rows_j, torch.arange(d2.shape[0]), d2.shape[0])
    with torch.no_grad():
        phi = gaussian_orbitals(zeta, d2, shells, second_shell, mask)
        # the same orbitals before the normalisation (here one pair per atom)
        norm = ((phi * phi) @ rep.grid_weights.double()).sqrt()
        torch.testing.assert_close(phi / torch.where(norm > 0, norm, 1.0)[:, :, None], expected)
        torch.testing.assert_close(phi, rep.basis(d2, rows_j))
    torch.testing.assert_close(rep.basis(d2, rows_j).detach(), phi)  # the autograd branch


def test_energy_forces_and_training_gradients_equal_those_of_the_composed_formula(monkeypatch):
    # the model with the fused basis against the same model whose normalised basis is
    # the composed autograd formula: energies, forces and the gradients of every parameter
    torch.manual_seed(4)
    rep = QDF(n_atom_basis=16, activation="silu", lebedev_order=5, n_radial=1)
    with torch.no_grad():
        rep.zeta_raw.add_(0.3 * torch.randn_like(rep.zeta_raw))
    model = build_model(rep).eval()
    batch = converter(rep.cutoff)([molecule("CH3CH2OH"), molecule("HCN")])
    parameters = dict(model.named_parameters())

    def composed_orbitals(zeta, d2, shells, second_shell, mask, weights, idx_j, n_atoms, **_):
        phi = (torch.exp(-zeta[:, :, None] * d2[:, None, :])
               * torch.where(second_shell[:, :, None], shells[:, None, 1, :], shells[:, None, 0, :])
               * mask[:, :, None])
        norm2 = phi.new_zeros(n_atoms, phi.shape[1]).index_add(0, idx_j, (phi * phi) @ weights)
        inv_norm = torch.where(norm2 > 0, torch.rsqrt(torch.where(norm2 > 0, norm2, 1.0)), 0.0)
        return phi * inv_norm[idx_j][:, :, None], inv_norm

    results = []
    for orbitals in (normalised_orbitals, composed_orbitals):
        monkeypatch.setattr(qdf_module, "normalised_orbitals", orbitals)
        inputs = {k: v.clone() for k, v in batch.items()}
        inputs[spk.properties.R].requires_grad_(True)
        energy = model(inputs)["energy"]
        # forces and every parameter's gradient from one backward pass
        gradients = torch.autograd.grad(energy.sum(), [inputs[spk.properties.R], *parameters.values()])
        results.append((energy.detach(), -gradients[0], dict(zip(parameters, gradients[1:]))))
    (e_fused, f_fused, g_fused), (e_ref, f_ref, g_ref) = results
    torch.testing.assert_close(e_fused, e_ref, rtol=1e-10, atol=1e-10)
    assert f_ref.abs().max() > 1e-3
    torch.testing.assert_close(f_fused, f_ref, rtol=1e-9, atol=1e-10)
    assert g_ref["representation.zeta_raw"].abs().max() > 0
    for name in g_ref:
        torch.testing.assert_close(g_fused[name], g_ref[name], rtol=1e-8, atol=1e-10)


def test_training_on_forces_takes_the_twice_differentiable_basis():
    # a forces loss differentiates the forces again: in training mode the model uses the
    # composed basis; the fused one refuses a second derivative instead of a wrong one
    torch.manual_seed(6)
    rep = QDF(n_atom_basis=8, lebedev_order=5, n_radial=1)
    model = build_model(rep, forces=True).train()
    out = model(converter(rep.cutoff)(molecule("HCN")))
    out["forces"].pow(2).sum().backward()
    assert rep.zeta_raw.grad.abs().max() > 0
    r_ij, rows_j, idx_j, n_atoms = random_pairs(rep.double(), requires_grad=True)
    d2 = rep.grid_distances2(r_ij)
    shells, zeta, second_shell, mask = rep._radial_inputs(d2, rows_j)
    phi, _ = normalised_orbitals(zeta, d2, shells, second_shell, mask, rep.grid_weights, idx_j, n_atoms)
    (gradient,) = torch.autograd.grad(phi.pow(2).sum(), r_ij, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gradient.sum().backward()
