"""The weighted average of QDF models: file format, predictions, calculator, density, CLI."""

import json

import numpy as np
import pytest
import torch
from ase.build import molecule

from ase_qdf import QDFCalculator, model_io
from ase_qdf.average import QDFAverage, check_average_weights, model_members
from ase_qdf.cli import main as qdf_main
from ase_qdf.density import density_model, molecule_fields
from ase_qdf.model_io import ModelFileError, load_qdf_model, save_qdf_average, save_qdf_model
from ase_qdf.predict import QDFEngine, predict

from .conftest import assert_forces_match_finite_differences, changed_copy, tiny_model

MOLS = [molecule("H2O"), molecule("CH3CH2OH"), molecule("C6H6")]
WEIGHTS = [0.7, 0.3]


def members():
    """A molecule-normalised and a locally normalised tiny model (as in the shipped pair)."""
    return tiny_model(seed=0), tiny_model(seed=1, mean=-0.1, normalisation="local", local_cutoff=3.0)


@pytest.fixture(scope="module")
def average_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("average") / "average.pt"
    save_qdf_average(members(), WEIGHTS, path, metadata={"purpose": "tests"})
    return path


def test_the_file_is_plain_data_and_keeps_each_members_weights_hash(tmp_path, average_path):
    payload = torch.load(average_path, weights_only=True)
    assert payload["format_version"] == 2 and payload["kind"] == "average"
    assert payload["weights"] == WEIGHTS
    for member, payload_member in zip(members(), payload["members"]):
        single = tmp_path / "single.pt"
        save_qdf_model(member, single)
        assert payload_member["weights_sha256"] == torch.load(single, weights_only=True)["weights_sha256"]
    loaded = load_qdf_model(average_path)
    assert isinstance(loaded, QDFAverage) and loaded.qdf_format_version == 2
    assert loaded.qdf_metadata == {"purpose": "tests"}
    assert loaded.weights.dtype == torch.float64
    assert [m.representation.normalisation for _, m in model_members(loaded)] == ["molecule", "local"]
    # a single model is still written as version 1, which older readers take
    assert torch.load(single, weights_only=True)["format_version"] == 1


def test_energies_per_atom_energies_and_forces_are_the_weighted_averages(average_path):
    average = load_qdf_model(average_path, dtype="float64")
    first, second = [predict(MOLS, model=m, dtype="float64", forces=True) for m in members()]
    both = predict(MOLS, model=average, dtype="float64", forces=True)
    for a, b, mean in zip(first, second, both):
        assert mean["energy"] == pytest.approx(0.7 * a["energy"] + 0.3 * b["energy"], abs=1e-9)
        np.testing.assert_allclose(mean["energies"], 0.7 * a["energies"] + 0.3 * b["energies"], atol=1e-9)
        np.testing.assert_allclose(mean["forces"], 0.7 * a["forces"] + 0.3 * b["forces"], atol=1e-9)
        assert mean["energies"].sum() == pytest.approx(mean["energy"], abs=1e-8)
    # the members differ, so the average is neither of them
    assert abs(first[1]["energy"] - second[1]["energy"]) > 1e-3


def test_forces_are_minus_the_gradient_of_the_averaged_energy(average_path):
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=3)
    atoms.calc = QDFCalculator(model=average_path, dtype="float64", device="cpu")
    assert_forces_match_finite_differences(atoms, [(0, 0), (2, 1), (4, 2)])


def test_the_full_forward_pass_agrees_with_the_inference_path(average_path):
    average = load_qdf_model(average_path, dtype="float64")
    engine = QDFEngine(average, device="cpu", dtype="float64")
    inputs = engine.converter(MOLS[:2])
    full = average(inputs)
    expected = predict(MOLS[:2], model=engine, forces=True)
    np.testing.assert_allclose(full[average.energy_key].detach().numpy(), [r["energy"] for r in expected],
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(full["forces"].detach().numpy(), np.concatenate([r["forces"] for r in expected]),
                               rtol=0, atol=1e-8)
    assert "hk_potential" not in full and full[average.energy_key + "_per_atom"].shape[0] == len(full["_atomic_numbers"])


@pytest.mark.parametrize("weights, match", [
    ([0.5, 0.4], "sum to 1"),
    ([1.2, -0.2], "non-negative"),
    ([float("nan"), 1.0], "finite"),
    ([1.0], "one weight per model"),
    (["a", "b"], "must be numbers"),
])
def test_bad_weights_are_named(tmp_path, weights, match):
    with pytest.raises(ValueError, match=match):
        save_qdf_average(members(), weights, tmp_path / "bad.pt")


def test_an_average_needs_two_models_with_one_cutoff(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        check_average_weights([1.0], 1)
    wider = tiny_model(seed=2, basis_cutoff=5.0)
    with pytest.raises(ValueError, match="share one cutoff"):
        save_qdf_average([tiny_model(), wider], WEIGHTS, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="single models, not averages"):
        save_qdf_average([QDFAverage(members(), WEIGHTS), tiny_model()], WEIGHTS, tmp_path / "bad.pt")


@pytest.mark.parametrize("change, match", [
    (lambda p: p["members"][1]["state_dict"]["representation.coefficients"].add_(1.0),
     "member 1: weights SHA-256 mismatch"),
    (lambda p: p.update(weights=[0.5, 0.6]), "sum to 1"),
    (lambda p: p["members"][0]["config"]["representation"].update(bogus=1), r"member 0: .*unknown key"),
    (lambda p: p.update(format_version=1), "needs format_version 2"),
    (lambda p: p.update(kind="ensemble"), "unknown model kind 'ensemble'"),
    (lambda p: p.update(format_version=4), "newer than this ase-qdf supports"),
])
def test_broken_average_files_are_refused_with_the_reason(tmp_path, average_path, change, match):
    with pytest.raises(ModelFileError, match=match):
        load_qdf_model(changed_copy(average_path, change, tmp_path / "broken.pt"))


def test_an_average_cannot_initialise_one_model(average_path):
    with pytest.raises(ModelFileError, match="average of 2 models"):
        model_io.load_weights_into(tiny_model(), average_path)


def test_a_lebedev_order_applies_to_every_member(average_path):
    engine = QDFEngine(average_path, device="cpu", dtype="float64", lebedev_order=5)
    assert model_io.lebedev_order_of(engine.model) == [5, 5]
    default = QDFEngine(average_path, device="cpu", dtype="float64")
    assert model_io.lebedev_order_of(default.model) == [m.representation.hyperparameters["lebedev_order"]
                                                        for m in members()]
    assert engine.evaluate(MOLS[:1])[0]["energy"] != pytest.approx(default.evaluate(MOLS[:1])[0]["energy"], abs=1e-9)


def test_the_density_is_that_of_the_molecule_normalised_member(average_path):
    average = load_qdf_model(average_path, dtype="float64")
    assert density_model(average) is average.members[0]
    atoms = molecule("H2O")
    points = atoms.get_positions() + 0.3
    from_average = molecule_fields(atoms, model=average, dtype="float64").density(points)
    from_member = molecule_fields(atoms, model=average.members[0], dtype="float64").density(points)
    np.testing.assert_array_equal(from_average, from_member)
    local_only = QDFAverage([members()[1], tiny_model(seed=4, normalisation="local", local_cutoff=3.0)], WEIGHTS)
    with pytest.raises(NotImplementedError, match="molecule-wide orbital normalisation"):
        molecule_fields(atoms, model=local_only, dtype="float64")


def test_cli_average_info_and_screen(tmp_path, capsys):
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    for member, path in zip(members(), (first, second)):
        save_qdf_model(member, path)
    out = tmp_path / "avg.pt"
    assert qdf_main(["average", str(first), str(second), "--weights", "0.7,0.3", "-o", str(out),
                     "--meta", "purpose=tests"]) == 0
    metadata = load_qdf_model(out).qdf_metadata
    assert metadata["purpose"] == "tests"
    assert [m["sha256"] for m in metadata["members"]] == [model_io.file_sha256(first), model_io.file_sha256(second)]
    capsys.readouterr()
    assert qdf_main(["info", "--model", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format_version"] == 2 and info["config"]["weights"] == WEIGHTS
    assert qdf_main(["average", str(first), str(second), "--weights", "0.7,0.2", "-o", str(tmp_path / "x.pt")]) == 1
    assert "sum to 1" in capsys.readouterr().err
    assert qdf_main(["average", str(first), "--weights", "1", "-o", str(tmp_path / "x.pt")]) == 1
    assert not (tmp_path / "x.pt").exists()
    xyz = tmp_path / "mols.xyz"
    from ase.io import write
    write(xyz, MOLS)
    csv_path = tmp_path / "out.csv"
    assert qdf_main(["screen", str(xyz), "-o", str(csv_path), "--model", str(out), "--quiet"]) == 0
    rows = csv_path.read_text().strip().splitlines()[1:]
    assert len(rows) == len(MOLS)
    settings = json.loads((tmp_path / "out.csv.settings.json").read_text())
    assert settings["lebedev_order"] == model_io.lebedev_order_of(load_qdf_model(out))
