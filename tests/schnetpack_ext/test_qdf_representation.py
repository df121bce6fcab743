"""The QDF representation against the dense reference and the symmetries."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

import schnetpack as spk

from schnetpack_ext.atomistic import HKPotential
from schnetpack_ext.representation import QDF
from tests.reference.qdf_dense import paper_offsets, qdf_dense


def build_model(rep, forces=False, dtype=torch.float64):
    outputs = [spk.atomistic.Atomwise(n_in=rep.n_atom_basis, n_layers=1, output_key="energy")]
    if forces:
        outputs.append(spk.atomistic.Forces(energy_key="energy"))
    model = spk.model.NeuralNetworkPotential(
        representation=rep,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=outputs,
    )
    return model.to(dtype)


def converter(cutoff, dtype=torch.float64):
    return spk.interfaces.AtomsConverter(
        neighbor_list=spk.transform.ASENeighborList(cutoff=cutoff), dtype=dtype
    )


def energy(model, atoms, cutoff):
    return model(converter(cutoff)(atoms))["energy"].detach().numpy()


@pytest.mark.parametrize("pieces", [QDF.basis_block_elements, 1], ids=["default pieces", "one pair per piece"])
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "inference"])
@pytest.mark.parametrize("name,orbital_scale", [("H2O", 1.0), ("HCN", 1.0), ("CH3COF", 1.0), ("CH3COF", 30.0)])
def test_fast_path_matches_dense_reference_on_paper_grid(name, orbital_scale, grad, pieces):
    # without autograd the basis and the functional are computed in place (inference
    # path), the orbitals in pieces of pairs (of one pair each: piece boundaries)
    torch.manual_seed(3)
    rep = QDF(n_atom_basis=16, grid="paper", activation="relu", basis_cutoff=40.0, zeta_min=0.0,
              orbital_scale=orbital_scale)
    rep.basis_block_elements = pieces
    with torch.no_grad():
        rep.zeta_raw.add_(0.3 * torch.randn_like(rep.zeta_raw))
    rep = rep.double()
    atoms = molecule(name)
    inputs = converter(rep.cutoff)(atoms)
    inputs = spk.atomistic.PairwiseDistances()(inputs)
    with torch.set_grad_enabled(grad):
        out = rep(inputs)

    layers = [(l.weight.detach().numpy(), l.bias.detach().numpy()) for l in rep.functional]
    features, density, potential, grid = qdf_dense(
        atoms.numbers, atoms.positions, rep.zeta.detach().numpy(),
        rep.coefficients.detach().numpy(), layers, orbital_scale=orbital_scale,
    )
    fast = out["scalar_representation"].detach().numpy()
    assert fast.shape == features.shape
    rel = np.abs(fast - features).max() / np.abs(features).max()
    assert rel < 1e-5
    np.testing.assert_allclose(out["density"].detach().numpy(), density, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out["external_potential"].numpy(), potential, rtol=1e-6, atol=1e-9)
    # the density integrates to the electron count on the grid
    assert out["density"].sum().item() == pytest.approx(atoms.numbers.sum(), rel=1e-9)


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "inference"])
@pytest.mark.parametrize("name", ["CH3COF", "CH3CH2OH"])
def test_local_normalisation_matches_dense_reference(name, grad):
    # a neighbourhood (2.5 A, switch from 1.0 A) smaller than the molecules, so that
    # every atom gets its own scale
    torch.manual_seed(4)
    rep = QDF(n_atom_basis=16, grid="paper", activation="relu", basis_cutoff=40.0, zeta_min=0.0,
              normalisation="local", local_cutoff=2.5, local_width=1.5).double()
    atoms = molecule(name)
    inputs = spk.atomistic.PairwiseDistances()(converter(rep.cutoff)(atoms))
    with torch.set_grad_enabled(grad):
        out = rep(inputs)
    layers = [(l.weight.detach().numpy(), l.bias.detach().numpy()) for l in rep.functional]
    features, density, _, _ = qdf_dense(
        atoms.numbers, atoms.positions, rep.zeta.detach().numpy(), rep.coefficients.detach().numpy(),
        layers, normalisation="local", local_cutoff=2.5, local_width=1.5,
    )
    fast = out["scalar_representation"].detach().numpy()
    assert np.abs(fast - features).max() / np.abs(features).max() < 1e-5
    np.testing.assert_allclose(out["density"].detach().numpy(), density, rtol=1e-6, atol=1e-9)
    # and it is not the molecule normalisation
    molecule_features, _, _, _ = qdf_dense(
        atoms.numbers, atoms.positions, rep.zeta.detach().numpy(), rep.coefficients.detach().numpy(), layers)
    assert np.abs(molecule_features - features).max() > 1e-3 * np.abs(features).max()


def _two_molecules(a, b, distance):
    far = b.copy()
    far.translate([distance, 0.0, 0.0])
    return a + far


@pytest.mark.parametrize("chunk_size", [None, 4], ids=["one block", "chunked"])
def test_local_normalisation_is_additive_for_distant_molecules_molecule_normalisation_is_not(chunk_size):
    torch.manual_seed(5)
    a, b = molecule("CH3COF"), molecule("H2O")
    energies = {}
    for normalisation in ("molecule", "local"):
        rep = QDF(n_atom_basis=16, activation="relu", normalisation=normalisation, chunk_size=chunk_size)
        model = build_model(rep)
        e_a, e_b = energy(model, a, rep.cutoff)[0], energy(model, b, rep.cutoff)[0]
        # far beyond every cutoff: no pair, no overlap of basis functions
        e_ab = energy(model, _two_molecules(a, b, 20.0), rep.cutoff)[0]
        energies[normalisation] = (e_ab, e_a + e_b, abs(e_a) + abs(e_b))
    e_ab, e_sum, size = energies["local"]
    assert abs(e_ab - e_sum) < 1e-9 * size
    e_ab, e_sum, size = energies["molecule"]
    # the paper's scale is shared by the whole molecule: the water changes the fluoride's energy
    assert abs(e_ab - e_sum) > 1e-4 * size


def test_local_normalisation_equals_molecule_normalisation_within_the_neighbourhood():
    # every atom of water within local_cutoff - local_width of every other: one scale
    torch.manual_seed(6)
    atoms = molecule("H2O")
    values = []
    for normalisation in ("molecule", "local"):
        torch.manual_seed(6)
        rep = QDF(n_atom_basis=16, normalisation=normalisation, local_width=1.5)
        values.append(energy(build_model(rep), atoms, rep.cutoff)[0])
    assert values[1] == pytest.approx(values[0], rel=1e-12)


def test_local_normalisation_settings_are_checked():
    with pytest.raises(ValueError, match="normalisation"):
        QDF(normalisation="atom")
    with pytest.raises(ValueError, match="neighbour list"):
        QDF(normalisation="local", local_cutoff=6.0)  # the pairs end at 4.75 A
    assert QDF(normalisation="local").local_cutoff == QDF().cutoff


def test_paper_grid_has_56_points():
    rep = QDF(grid="paper")
    assert rep.n_grid_points == 56
    np.testing.assert_allclose(
        np.sort(rep.grid_offsets.numpy(), axis=0), np.sort(paper_offsets(), axis=0), atol=1e-6
    )


def test_exponents_stay_positive_and_unknown_elements_are_named():
    rep = QDF(n_atom_basis=8)
    with torch.no_grad():
        rep.zeta_raw.fill_(-1e3)
    assert (rep.zeta >= rep.zeta_min).all() and (rep.zeta > 0).all()
    model = build_model(rep)
    with pytest.raises(ValueError, match=r"\[16\].*supported"):
        energy(model, Atoms("SH2", positions=[[0, 0, 0], [0, 0, 1.34], [1.34, 0, 0]]), rep.cutoff)


def _random_rotations(n, seed=0):
    return Rotation.random(n, random_state=seed).as_matrix()


def test_lebedev_grid_is_rotation_invariant_paper_grid_is_not():
    torch.manual_seed(0)
    atoms = molecule("CH3CH2OH")
    deltas = {}
    for grid, activation in (("lebedev", "silu"), ("paper", "relu")):
        rep = QDF(n_atom_basis=32, grid=grid, activation=activation)
        model = build_model(rep)
        e0 = energy(model, atoms, rep.cutoff)[0]
        diffs = []
        for rot in _random_rotations(5):
            rotated = atoms.copy()
            rotated.positions = atoms.positions @ rot.T
            diffs.append(abs(energy(model, rotated, rep.cutoff)[0] - e0))
        deltas[grid] = (np.mean(diffs), abs(e0))
    mean_leb, scale = deltas["lebedev"]
    mean_paper, _ = deltas["paper"]
    assert mean_leb < 1e-4 * scale
    assert mean_paper > 100 * mean_leb


def test_translation_and_permutation_invariance():
    torch.manual_seed(1)
    rep = QDF(n_atom_basis=16)
    model = build_model(rep)
    atoms = molecule("CH3CH2OH")
    e0 = energy(model, atoms, rep.cutoff)
    shifted = atoms.copy()
    shifted.translate([3.1, -2.0, 7.5])
    perm = np.random.default_rng(0).permutation(len(atoms))
    permuted = atoms[perm]
    np.testing.assert_allclose(energy(model, shifted, rep.cutoff), e0, rtol=1e-10)
    np.testing.assert_allclose(energy(model, permuted, rep.cutoff), e0, rtol=1e-10)


# the local normalisation with a neighbourhood switch active between the atoms: its
# derivative is part of the forces
@pytest.mark.parametrize("settings", [{}, {"normalisation": "local", "local_cutoff": 2.5, "local_width": 1.5}],
                         ids=["molecule", "local"])
def test_forces_match_finite_differences_and_have_no_net_force_or_torque(settings):
    torch.manual_seed(2)
    rep = QDF(n_atom_basis=16, **settings)
    model = build_model(rep, forces=True)
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=1)
    conv = converter(rep.cutoff)
    forces = model(conv(atoms))["forces"].detach().numpy()
    h = 1e-4
    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, k] += h
            minus.positions[a, k] -= h
            numeric[a, k] = -(energy(model, plus, rep.cutoff)[0] - energy(model, minus, rep.cutoff)[0]) / (2 * h)
    np.testing.assert_allclose(forces, numeric, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-9)


#: grids on which the batch takes either path of QDF.forward: 100 points per atom
#: (more than the 60 orbital types: per-atom products) or 14 (per-molecule padded)
GRID_PATHS = {"per-atom": {}, "padded": {"n_radial": 1, "lebedev_order": 5, "orbital_scale": 30.0}}


@pytest.mark.parametrize("grid", GRID_PATHS)
def test_batch_of_different_molecules_equals_single_molecules(grid):
    torch.manual_seed(4)
    rep = QDF(n_atom_basis=16, **GRID_PATHS[grid])
    model = build_model(rep)
    mols = [molecule("H2O"), molecule("CH3CH2OH"), molecule("HCN")]
    batched = model(converter(rep.cutoff)(mols))["energy"].detach().numpy()
    single = np.array([energy(model, m, rep.cutoff)[0] for m in mols])
    np.testing.assert_allclose(batched, single, rtol=1e-10)
    with torch.inference_mode():  # the in-place inference path too
        inference = model(converter(rep.cutoff)(mols))["energy"].numpy()
    np.testing.assert_allclose(inference, single, rtol=1e-10)


def test_hk_map_outputs_one_value_per_grid_point():
    rep = QDF(n_atom_basis=16).double()
    model = spk.model.NeuralNetworkPotential(
        representation=rep,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[HKPotential(n_hidden=8)],
    ).double()
    atoms = molecule("H2O")
    out = model(converter(rep.cutoff)(atoms))
    n = len(atoms) * rep.n_grid_points
    assert out["hk_potential"].shape == (n,)
    assert out["hk_potential_target"].shape == (n,)
    assert (out["hk_potential_target"] < 0).all()


@pytest.mark.parametrize("grid", GRID_PATHS)
def test_bf16_inference_stays_close_to_float32_and_training_keeps_float32_first_layer(grid):
    torch.manual_seed(6)
    rep = QDF(n_atom_basis=16, **GRID_PATHS[grid])
    model = build_model(rep, dtype=torch.float32).eval()
    mols = [molecule("CH3CH2OH"), molecule("HCN"), molecule("H2O")]
    batch = converter(rep.cutoff, torch.float32)(mols)

    def features(mode):
        inputs = spk.atomistic.PairwiseDistances()({k: v.clone() for k, v in batch.items()})
        return rep(inputs, compute_hk_fields=False, mixed_precision=mode)["scalar_representation"]

    with torch.inference_mode():
        full, low = features("off"), features("always")
    assert full.dtype == low.dtype == torch.float32
    scale = full.abs().max()
    # bf16 (8 significant bits) in every layer: percent-level, not exact, not wild
    assert 0 < (low - full).abs().max() / scale < 0.03
    # with autograd (training) the first product stays float32: closer to float32
    grad_low = features("always").detach()
    assert (grad_low - full).abs().max() < (low - full).abs().max()


@pytest.mark.parametrize("precision", ["off", "always"], ids=["float32", "bf16"])
@pytest.mark.parametrize("grid", GRID_PATHS)
def test_functional_in_blocks_of_atoms_gives_the_same_features_and_gradients(grid, precision):
    # the functional runs in blocks of atoms, in inference and under autograd
    torch.manual_seed(8)
    rep = QDF(n_atom_basis=16, mixed_precision=precision, **GRID_PATHS[grid])
    model = build_model(rep, dtype=torch.float32).eval()
    batch = converter(rep.cutoff, torch.float32)([molecule("CH3CH2OH"), molecule("HCN"), molecule("H2O")])

    def features_and_gradient(block_elements):
        rep.block_elements = block_elements
        inputs = spk.atomistic.PairwiseDistances()({k: v.clone() for k, v in batch.items()})
        with torch.inference_mode():
            pooled = rep(dict(inputs), compute_hk_fields=False)["scalar_representation"]
        rep.zero_grad()
        rep(inputs, compute_hk_fields=False)["scalar_representation"].sum().backward()
        return pooled, rep.functional[1].weight.grad.clone()

    # one block for the whole batch, against blocks of one atom (the grid has >= 14 points)
    pooled, gradient = features_and_gradient(2**40)
    pooled_blocks, gradient_blocks = features_and_gradient(1)
    assert pooled.dtype == torch.float32 and pooled.shape == (15, 16)
    torch.testing.assert_close(pooled_blocks, pooled, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gradient_blocks, gradient, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("grid", GRID_PATHS)
def test_chunked_evaluation_equals_single_pass_for_energy_forces_and_fields(grid):
    # blocks of 4 atoms split molecules: a molecule's Gram matrix adds up over blocks
    torch.manual_seed(5)
    atoms_list = [molecule("CH3CH2OH"), molecule("HCN"), molecule("H2O")]
    results = []
    for chunk_size in (None, 4):
        torch.manual_seed(5)
        rep = QDF(n_atom_basis=16, chunk_size=chunk_size, **GRID_PATHS[grid])
        rep.max_unchunked_atoms = 0  # blocks under autograd too, whatever the size
        model = build_model(rep, forces=True)
        out = model(converter(rep.cutoff)(atoms_list))
        inputs = spk.atomistic.PairwiseDistances()(converter(rep.cutoff)(atoms_list))
        fields = rep(inputs)
        results.append((out["energy"].detach().numpy(), out["forces"].detach().numpy(),
                        fields["density"].detach().numpy(), fields["external_potential"].numpy()))
    for single, chunked in zip(*results):
        np.testing.assert_allclose(chunked, single, rtol=1e-9, atol=1e-12)
    # inference: blocks of inference_chunk_size atoms (one block by default here)
    reference = fields["scalar_representation"].detach().numpy()
    for inference_chunk, pieces in ((QDF.inference_chunk_size, QDF.basis_block_elements), (4, QDF.basis_block_elements),
                                    (4, 1)):
        rep.inference_chunk_size, rep.basis_block_elements = inference_chunk, pieces
        with torch.inference_mode():
            inputs = spk.atomistic.PairwiseDistances()(converter(rep.cutoff)(atoms_list))
            fields = rep(inputs)
        np.testing.assert_allclose(fields["scalar_representation"].numpy(), reference, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fields["density"].numpy(), results[0][2], rtol=1e-9, atol=1e-12)


def test_orbitals_are_evaluated_per_layout_on_their_own_slots():
    rep = QDF(n_atom_basis=8)
    layout_of_row, layouts = rep.layout_index, rep.layouts
    rows = rep.element_rows(torch.tensor([1, 6, 7, 8, 9]))
    assert layout_of_row[rows].tolist() == [0, 1, 1, 1, 1]
    # hydrogen: 4 q = 1 orbitals; C, N, O, F: 6 q = 1 then 8 q = 2
    assert layouts == [(4, ((0, 4, False),)), (14, ((0, 6, False), (6, 14, True)))]
    # the per-layout orbitals equal the padded ones, slot by slot, and nothing is lost
    torch.manual_seed(0)
    rep = rep.double()
    r_ij = torch.randn(40, 3, dtype=torch.float64)
    rows_j = torch.randint(0, 5, (40,))
    padded = rep.basis(rep.grid_distances2(r_ij), rows_j)
    rep.basis_block_elements = 3 * 14 * rep.n_grid_points  # pieces of 3 heavy-atom pairs
    seen = torch.zeros(40, dtype=torch.long)
    with torch.no_grad():
        for pairs, phi in rep._orbitals_without_grad(r_ij, rows_j, keep=False):
            n_slots = phi.shape[1]
            assert n_slots == (4 if bool((rows_j[pairs] == 0).all()) else 14)
            torch.testing.assert_close(phi, padded[pairs, :n_slots])
            assert float(padded[pairs, n_slots:].abs().sum()) == 0.0  # the padded slots skipped are empty
            seen[pairs] += 1
    assert seen.tolist() == [1] * 40
    # the layouts are a non-persistent buffer (moves with .to(), not in state dicts), no
    # device-bound cache; a module pickled before they existed gets them on loading
    assert "_orbital_layouts" not in rep.__getstate__()
    assert "layout_index" not in rep.state_dict()
    state = rep.__getstate__()
    state["_buffers"] = {k: v for k, v in state["_buffers"].items() if k != "layout_index"}
    state.pop("layouts")
    old = QDF.__new__(QDF)
    old.__setstate__(state)
    assert old.layout_index.tolist() == rep.layout_index.tolist() and old.layouts == layouts


def test_small_systems_under_autograd_run_in_one_block_without_checkpointing(monkeypatch):
    import schnetpack_ext.representation.qdf as qdf_module

    calls = []

    def counting_checkpoint(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return fn(*args)

    monkeypatch.setattr(qdf_module, "checkpoint", counting_checkpoint)
    torch.manual_seed(7)
    rep = QDF(n_atom_basis=8, chunk_size=4)
    model = build_model(rep, forces=True)
    batch = converter(rep.cutoff)([molecule("CH3CH2OH"), molecule("HCN")])  # 12 atoms
    energy_one_block = model(dict(batch))["energy"].detach()
    assert calls == []  # a training batch: its forward pass runs once
    rep.max_unchunked_atoms = 11  # one atom fewer: blocks of 4, recomputed in backward
    energy_blocks = model(dict(batch))["energy"].detach()
    assert len(calls) > 0
    torch.testing.assert_close(energy_blocks, energy_one_block, rtol=1e-10, atol=0)


def test_models_pickled_without_hyperparameters_recover_them(tmp_path):
    import pickle

    from schnetpack_ext.atomistic import HKPotential

    for module in (QDF(n_atom_basis=8, lebedev_order=9, n_radial=3, activation="relu"),
                   HKPotential(n_hidden=8, n_layers=2)):
        expected = dict(module.hyperparameters)
        del module.hyperparameters  # as pickled by an older version
        restored = pickle.loads(pickle.dumps(module))
        for key, value in expected.items():
            if key != "zeta_init":  # an initial value; the trained weights carry the state
                assert restored.hyperparameters[key] == value, key


def test_local_normalisation_in_blocks_equals_one_block():
    # large systems run the local path in blocks of atoms, each with its own per-atom (T x D)
    # matrices split off the whole tensor; energies and forces must not depend on the blocks
    torch.manual_seed(3)
    atoms = molecule("C60")
    atoms.rattle(0.02, seed=2)
    results = []
    for blocked in (False, True):
        torch.manual_seed(3)
        rep = QDF(n_atom_basis=16, normalisation="local", local_cutoff=2.5, local_width=1.5)
        if blocked:
            rep.max_unchunked_atoms, rep.chunk_size = 0, 16  # outer blocks of 16 atoms
            rep.block_elements = 16 * rep.grid_weights.numel() * 5  # inner blocks of 5 atoms
        model = build_model(rep, forces=True).double()
        out = model(converter(rep.cutoff)(atoms))
        results.append((out["energy"].detach().numpy(), out["forces"].detach().numpy()))
    (e_whole, f_whole), (e_blocks, f_blocks) = results
    np.testing.assert_allclose(e_blocks, e_whole, rtol=1e-12)
    np.testing.assert_allclose(f_blocks, f_whole, rtol=1e-9, atol=1e-10)
    assert np.abs(f_whole).max() > 1e-3
