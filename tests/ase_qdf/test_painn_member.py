"""PaiNN in an ase-qdf file, alone or as a member of an average with QDF (``qdf_qm9_hybrid``)."""

import numpy as np
import pytest
import torch
from ase.build import molecule

import schnetpack as spk
import schnetpack.transform as trn

from ase_qdf import QDFCalculator
from ase_qdf.average import QDFAverage, model_members, qdf_members
from ase_qdf.density import density_model
from ase_qdf.model_io import (ModelFileError, lebedev_order_of, load_qdf_model, read_model_file, save_qdf_average,
                              save_qdf_model, with_lebedev_order)
from ase_qdf.predict import predict
from schnetpack_ext.datasets import qm9pack_atomrefs_ev

from .conftest import assert_forces_match_finite_differences, changed_copy, tiny_model

MOLS = [molecule("H2O"), molecule("CH3CH2OH"), molecule("C6H6")]


def spk_painn(cutoff=4.75, seed=0, trainable_rbf=False):
    """A PaiNN model as ``spktrain experiment=painn_qm9_member`` builds it (small), random weights."""
    torch.manual_seed(seed)
    model = spk.model.NeuralNetworkPotential(
        representation=spk.representation.PaiNN(
            n_atom_basis=16, n_interactions=2,
            radial_basis=spk.nn.GaussianRBF(n_rbf=8, cutoff=cutoff, trainable=trainable_rbf),
            cutoff_fn=spk.nn.CosineCutoff(cutoff),
        ),
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=16, output_key="energy_U0")],
        postprocessors=[
            trn.CastTo64(),
            trn.AddOffsets("energy_U0", add_mean=True, add_atomrefs=True,
                           atomrefs=torch.tensor(qm9pack_atomrefs_ev(), dtype=torch.float64),
                           property_mean=torch.tensor([-0.2], dtype=torch.float64)),
        ],
    )
    with torch.no_grad():  # visible per-atom energies: the fresh output layer is near zero
        for p in model.output_modules.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.double().eval()


def spk_energies(model, atoms_list):
    converter = spk.interfaces.AtomsConverter(neighbor_list=trn.ASENeighborList(cutoff=4.75), dtype=torch.float64)
    return np.array([float(model(converter(atoms))["energy_U0"].detach()) for atoms in atoms_list])


@pytest.fixture(scope="module")
def painn_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("painn") / "painn.pt"
    save_qdf_model(spk_painn(), path, metadata={"purpose": "tests"})
    return path


@pytest.fixture(scope="module")
def hybrid_path(tmp_path_factory, painn_path):
    path = tmp_path_factory.mktemp("hybrid") / "hybrid.pt"
    save_qdf_average([tiny_model(seed=0), load_qdf_model(painn_path)], [0.4, 0.6], path)
    return path


def test_a_painn_file_is_plain_data_and_predicts_as_the_schnetpack_model(painn_path):
    payload = torch.load(painn_path, weights_only=True)
    assert payload["format_version"] == 3  # older readers refuse it by its version
    assert payload["config"]["representation"] == {
        "architecture": "painn", "n_atom_basis": 16, "n_interactions": 2, "n_rbf": 8, "cutoff": 4.75,
        "shared_interactions": False, "shared_filters": False, "epsilon": 1e-8}
    assert payload["config"]["hk"] is None
    loaded = [r["energy"] for r in predict(MOLS, model=painn_path, dtype="float64")]
    np.testing.assert_allclose(loaded, spk_energies(spk_painn(), MOLS), rtol=0, atol=1e-6)  # summation order
    assert np.ptp(loaded) > 1.0  # different molecules, different energies


def test_the_hybrid_is_the_weighted_sum_of_qdf_and_painn(hybrid_path, painn_path):
    hybrid = load_qdf_model(hybrid_path, dtype="float64")
    assert isinstance(hybrid, QDFAverage) and hybrid.qdf_format_version == 3
    assert [type(m.representation).__name__ for _, m in model_members(hybrid)] == ["QDF", "PaiNN"]
    qdf = predict(MOLS, model=tiny_model(seed=0), dtype="float64", forces=True)
    painn = predict(MOLS, model=painn_path, dtype="float64", forces=True)
    both = predict(MOLS, model=hybrid, dtype="float64", forces=True)
    for a, b, mean in zip(qdf, painn, both):
        assert mean["energy"] == pytest.approx(0.4 * a["energy"] + 0.6 * b["energy"], abs=1e-9)
        np.testing.assert_allclose(mean["energies"], 0.4 * a["energies"] + 0.6 * b["energies"], atol=1e-9)
        np.testing.assert_allclose(mean["forces"], 0.4 * a["forces"] + 0.6 * b["forces"], atol=1e-9)
        assert abs(a["energy"] - b["energy"]) > 1e-3


def test_calculator_forces_of_the_hybrid_are_minus_the_gradient(hybrid_path):
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=3)
    atoms.calc = QDFCalculator(model=hybrid_path, dtype="float64", device="cpu")
    assert_forces_match_finite_differences(atoms, [(0, 0), (3, 2)])


def test_density_and_grid_are_the_qdf_members(hybrid_path, painn_path):
    hybrid = load_qdf_model(hybrid_path)
    ((_, qdf),) = qdf_members(hybrid)
    assert density_model(hybrid) is qdf
    assert lebedev_order_of(hybrid) == [qdf.representation.hyperparameters["lebedev_order"], None]
    finer = with_lebedev_order(hybrid, 17, copy_first=True)
    assert lebedev_order_of(finer) == [17, None]
    painn = load_qdf_model(painn_path)
    with pytest.raises(ValueError, match="no QDF member"):
        density_model(painn)
    with pytest.raises(ValueError, match="no QDF member"):
        with_lebedev_order(painn, 17)


def test_members_must_share_the_cutoff(tmp_path):
    with pytest.raises(ValueError, match="share one cutoff"):
        save_qdf_average([tiny_model(), spk_painn(cutoff=5.0)], [0.5, 0.5], tmp_path / "bad.pt")


def test_painn_variants_that_cannot_be_rebuilt_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="fixed Gaussian radial basis"):
        save_qdf_model(spk_painn(trainable_rbf=True), tmp_path / "bad.pt")


@pytest.mark.parametrize("change, match", [
    (lambda p: p.update(format_version=2), "needs format_version 3"),
    (lambda p: p["config"]["representation"].pop("n_rbf"), "missing \\['n_rbf'\\]"),
    (lambda p: p["config"].update(hk={"n_hidden": 8}), "no HK head"),
])
def test_broken_painn_files_are_refused_with_the_reason(tmp_path, painn_path, change, match):
    with pytest.raises(ModelFileError, match=match):
        read_model_file(changed_copy(painn_path, change, tmp_path / "broken.pt"))
