import json

import numpy as np
import pytest
import torch
from ase.build import molecule

import schnetpack as spk

from schnetpack_ext.atomistic import HKPotential
from schnetpack_ext.datasets import qm9pack_atomrefs_ev
from schnetpack_ext.representation import QDF

from ase_qdf import model_io
from ase_qdf.model_io import (
    ModelFileError,
    UntrustedPickleError,
    build_qdf_model,
    default_config,
    export_spk_model,
    load_qdf_model,
    read_model_file,
    save_qdf_model,
)
from ase_qdf.predict import predict_energies

from .conftest import TINY_HK, TINY_REP, changed_copy, tiny_model

MOLS = [molecule("H2O"), molecule("CH3CH2OH")]


def test_roundtrip_weights_config_metadata(tmp_path, model_path):
    original = tiny_model()
    loaded = load_qdf_model(model_path)
    a, b = original.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k].to(b[k].dtype), rtol=0, atol=0)
    assert loaded.qdf_config == model_io.model_config(original)
    assert loaded.qdf_metadata == {"purpose": "tests", "random_weights": True}
    assert loaded.qdf_sha256 == model_io.file_sha256(model_path)
    # offsets stay float64 in a float32 model
    assert loaded.postprocessors[1].atomref.dtype == torch.float64
    assert next(loaded.representation.parameters()).dtype == torch.float32
    # the file is plain data: it loads with weights_only=True
    payload = torch.load(model_path, weights_only=True)
    assert payload["format"] == "ase-qdf-model" and payload["format_version"] == 1
    json.dumps(payload["config"])
    np.testing.assert_allclose(
        predict_energies(MOLS, model=original, dtype="float64"),
        predict_energies(MOLS, model=loaded, dtype="float64"),
        rtol=0, atol=1e-9,
    )


def test_resave_loaded_model_is_identical(tmp_path, model64):
    path = tmp_path / "again.pt"
    save_qdf_model(model64, path, metadata={"x": 1})
    again = load_qdf_model(path, dtype="float64")
    for k, v in model64.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_qdf_model(tiny_model(), tmp_path / "m.pt", metadata={"bad": object()})


def test_tampered_weights_are_refused(tmp_path, model_path):
    payload = torch.load(model_path, weights_only=True)
    payload["state_dict"]["representation.coefficients"][0, 0] += 1.0
    bad = tmp_path / "tampered.pt"
    torch.save(payload, bad)
    with pytest.raises(ModelFileError, match="weights SHA-256 mismatch"):
        load_qdf_model(bad)


def test_expected_sha256(model_path):
    sha = model_io.file_sha256(model_path)
    load_qdf_model(model_path, expected_sha256=sha)
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        load_qdf_model(model_path, expected_sha256="0" * 64)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda p: p.update(format="something-else"), "not an ase-qdf model file"),
        (lambda p: p.update(format_version=4), "newer than this ase-qdf supports"),
        (lambda p: p["config"].pop("atomwise"), r"lacks key\(s\) \['atomwise'\]"),
        (lambda p: p["config"]["representation"].update(bogus=1), r"unknown key\(s\) \['bogus'\]"),
        (lambda p: p["config"]["atomwise"].update(n_in=3), "does not match the representation"),
        (lambda p: p.pop("state_dict"), "missing key 'state_dict'"),
    ],
)
def test_bad_format_version_config_are_named(tmp_path, model_path, change, match):
    with pytest.raises(ValueError, match=match):
        load_qdf_model(changed_copy(model_path, change, tmp_path / "bad.pt"))


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_qdf_model("/nonexistent/model.pt")


def spk_training_model(seed=5):
    """A model laid out as `spktrain experiment=qdf_qm9` builds it."""
    torch.manual_seed(seed)
    rep = QDF(**TINY_REP)
    model = spk.model.NeuralNetworkPotential(
        representation=rep,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[
            spk.atomistic.Atomwise(n_in=16, n_layers=1, output_key="energy_U0", aggregation_mode="sum"),
            HKPotential(**TINY_HK),
        ],
        postprocessors=[
            spk.transform.CastTo64(),
            spk.transform.AddOffsets(
                "energy_U0", add_mean=True, add_atomrefs=True,
                atomrefs=torch.tensor(qm9pack_atomrefs_ev()),
                # a scalar, as spktrain leaves it after initialize_transforms
                property_mean=torch.tensor(-0.4),
            ),
        ],
    )
    return model.eval()


def spk_energies(model, atoms_list):
    conv = spk.interfaces.AtomsConverter(
        neighbor_list=spk.transform.MatScipyNeighborList(cutoff=model.representation.cutoff),
        dtype=torch.float64,
    )
    model = model.double()
    out = model(conv(atoms_list))
    return out["energy_U0"].detach().numpy()


def test_pickled_model_refused_without_opt_in(tmp_path):
    best = tmp_path / "best_model"
    torch.save(spk_training_model(), best)
    with pytest.raises(UntrustedPickleError, match="--trust-pickle"):
        load_qdf_model(best)
    with pytest.raises(UntrustedPickleError, match="arbitrary code"):
        export_spk_model(best, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_export_best_model_and_checkpoint(tmp_path):
    source = spk_training_model()
    best = tmp_path / "best_model"
    torch.save(source, best)
    out = tmp_path / "exported.pt"
    sha = export_spk_model(best, out, trust_pickle=True, metadata={"run": "test"})
    assert sha == model_io.file_sha256(out)
    payload = read_model_file(out)
    assert payload["metadata"]["run"] == "test"
    assert payload["config"]["hk"] == HKPotential(**TINY_HK).hyperparameters
    expected = spk_energies(spk_training_model(), MOLS)
    got = predict_energies(MOLS, model=out, dtype="float64")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)

    # a Lightning-style checkpoint: pickled model in hyper_parameters, weights in state_dict
    ckpt = tmp_path / "last.ckpt"
    stale = spk_training_model(seed=9)
    torch.save({"hyper_parameters": {"model": stale},
                "state_dict": {"model." + k: v for k, v in source.state_dict().items()}}, ckpt)
    export_spk_model(ckpt, tmp_path / "from_ckpt.pt", trust_pickle=True)
    np.testing.assert_allclose(predict_energies(MOLS, model=tmp_path / "from_ckpt.pt", dtype="float64"),
                               expected, rtol=0, atol=1e-8)


def test_export_on_a_higher_lebedev_order(tmp_path):
    best = tmp_path / "best_model"
    torch.save(spk_training_model(), best)
    out = tmp_path / "order17.pt"
    export_spk_model(best, out, trust_pickle=True, lebedev_order=17)
    payload = read_model_file(out)
    assert payload["config"]["representation"]["lebedev_order"] == 17
    assert payload["metadata"]["trained_lebedev_order"] == 11
    model = load_qdf_model(out, dtype="float64")
    assert model.representation.n_grid_points == 2 * 110
    # the same functional integrated more exactly: close to, not equal to, the order-11 energies
    expected = spk_energies(spk_training_model(), MOLS)
    got = predict_energies(MOLS, model=out, dtype="float64")
    assert 0 < np.abs(got - expected).max() < 1e-2


def test_default_model_missing_and_registry(tmp_path, monkeypatch, model_path):
    monkeypatch.setattr(model_io, "models_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="not present"):
        model_io.load_default_model()
    import shutil

    shutil.copy(model_path, tmp_path / "qdf_qm9.pt")
    with pytest.raises(ModelFileError, match="no SHA-256 recorded"):
        model_io.load_default_model()
    entry = model_io.register_model(tmp_path / "qdf_qm9.pt", directory=tmp_path)
    assert entry == {"name": "qdf_qm9", "file": "qdf_qm9.pt", "sha256": model_io.file_sha256(model_path)}
    assert model_io.default_model_path() == tmp_path / "qdf_qm9.pt"
    model = model_io.load_default_model()
    assert model.qdf_sha256 == entry["sha256"]
    # a different file under the registered name is refused
    save_qdf_model(tiny_model(seed=3), tmp_path / "qdf_qm9.pt")
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        model_io.load_default_model()


def test_shipped_registry_is_well_formed():
    reg = json.loads((model_io.models_dir() / "registry.json").read_text())
    names = [e["name"] for e in reg["models"]]
    assert reg["default"] in names
    for e in reg["models"]:
        assert set(e) == {"name", "file", "sha256"}
        path = model_io.models_dir() / e["file"]
        if path.exists():
            assert e["sha256"] == model_io.file_sha256(path)


def test_full_forward_runs_hk_and_forces(model64):
    # model(inputs) runs every module, as in training (energy, per-atom, HK, forces)
    conv = spk.interfaces.AtomsConverter(
        neighbor_list=spk.transform.MatScipyNeighborList(cutoff=model64.representation.cutoff),
        dtype=torch.float64,
    )
    out = model64(conv([molecule("H2O")]))
    assert {"energy_U0", "energy_U0_per_atom", "hk_potential", "forces"} <= set(out)
    assert out["forces"].shape == (3, 3)


def test_default_config_builds():
    model = build_qdf_model(default_config())
    assert model.representation.cutoff == pytest.approx(4.75)
    assert model.qdf_config["atomwise"]["n_in"] == 250



def test_export_refuses_an_order_that_is_no_lebedev_rule(tmp_path):
    best = tmp_path / "best_model"
    torch.save(spk_training_model(), best)
    with pytest.raises(ValueError, match="lebedev_order=4 is not a Lebedev rule"):
        export_spk_model(best, tmp_path / "out.pt", trust_pickle=True, lebedev_order=4)
    assert not (tmp_path / "out.pt").exists()


def test_load_weights_into_copies_weights_but_not_offsets(model_path):
    # a model that differs in settings that change no weight (autocast, chunking, and the
    # normalisation: a local-normalisation run starts from molecule-normalised weights)
    target = build_qdf_model(default_config({**TINY_REP, "mixed_precision": "train", "chunk_size": 7,
                                             "normalisation": "local"}, TINY_HK))
    target.postprocessors[1].mean.fill_(0.5)
    model_io.load_weights_into(target, model_path)
    source = tiny_model().state_dict()
    for key, value in target.state_dict().items():
        if key.startswith("postprocessors"):
            continue
        assert torch.equal(value, source[key]), key
    # offsets come from the training data of the new run, not from the file
    assert float(target.postprocessors[1].mean) == 0.5


def test_load_weights_into_keeps_the_models_own_lebedev_order(model_path):
    # a run on order 17 started from weights trained on order 11 (phase 25): the weights
    # are copied, the grid (a buffer) stays the target's
    target = build_qdf_model(default_config({**TINY_REP, "lebedev_order": 17}, TINY_HK))
    assert load_qdf_model(model_path).representation.n_grid_points != target.representation.n_grid_points
    n_points = target.representation.n_grid_points
    model_io.load_weights_into(target, model_path)
    assert target.representation.n_grid_points == n_points
    assert target.representation.hyperparameters["lebedev_order"] == 17
    reference = model_io.with_lebedev_order(tiny_model(), 17)
    target.postprocessors[1].mean.copy_(reference.postprocessors[1].mean)
    np.testing.assert_allclose(predict_energies(MOLS, model=target, dtype="float64"),
                               predict_energies(MOLS, model=reference, dtype="float64"), rtol=0, atol=1e-9)


@pytest.mark.parametrize("change, named", [
    ({"activation": "relu"}, "representation.activation: 'silu' in the file, 'relu' in the model"),
    ({"n_atom_basis": 8}, "representation.n_atom_basis: 16 in the file, 8 in the model"),
    # changes the predictions with the same weights: never silently copied
    ({"orbital_scale": 30.0}, "representation.orbital_scale: 1.0 in the file, 30.0 in the model"),
])
def test_load_weights_into_names_architecture_differences(model_path, change, named):
    target = build_qdf_model(default_config({**TINY_REP, **change}, TINY_HK))
    with pytest.raises(ModelFileError, match="cannot initialise this model") as err:
        model_io.load_weights_into(target, model_path)
    assert named in str(err.value)


def test_orbital_scale_is_saved_and_changes_the_energy(tmp_path):
    scaled = build_qdf_model(default_config({**TINY_REP, "orbital_scale": 30.0}, TINY_HK))
    scaled.load_state_dict(tiny_model().state_dict())
    path = tmp_path / "scaled.pt"
    save_qdf_model(scaled, path)
    loaded = load_qdf_model(path)
    assert loaded.qdf_config["representation"]["orbital_scale"] == 30.0
    e_scaled = predict_energies(MOLS, model=loaded, dtype="float64")
    np.testing.assert_allclose(e_scaled, predict_energies(MOLS, model=scaled, dtype="float64"), rtol=0, atol=1e-8)
    # the same weights without the scale predict something else
    assert np.abs(e_scaled - predict_energies(MOLS, model=tiny_model(), dtype="float64")).max() > 1e-3


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_orbital_scale_must_be_positive(bad):
    with pytest.raises(ValueError, match="orbital_scale"):
        QDF(n_atom_basis=8, orbital_scale=bad)


def test_shipped_models_load_by_registered_name(tmp_path, monkeypatch, model_path):
    import shutil

    from ase_qdf.predict import resolve_model

    monkeypatch.setattr(model_io, "models_dir", lambda: tmp_path)
    shutil.copy(model_path, tmp_path / "qdf_qm9.pt")
    save_qdf_model(tiny_model(seed=3), tmp_path / "qdf_other.pt")
    model_io.register_model(tmp_path / "qdf_qm9.pt", directory=tmp_path)
    other = model_io.register_model(tmp_path / "qdf_other.pt", name="qdf_other", directory=tmp_path,
                                    make_default=False)
    assert model_io.registered_names() == ["qdf_qm9", "qdf_other"]
    by_name = resolve_model("qdf_other", device="cpu")
    assert by_name.qdf_sha256 == other["sha256"]
    assert resolve_model(None, device="cpu").qdf_sha256 == model_io.file_sha256(model_path)
    # an unknown name is a missing file, named as such
    with pytest.raises(FileNotFoundError):
        resolve_model("qdf_nonexistent", device="cpu")


def test_a_file_older_than_a_setting_means_its_default(tmp_path, model_path):
    # files written before `orbital_scale` existed (the shipped model's) lack the key
    payload = torch.load(model_path, weights_only=True)
    del payload["config"]["representation"]["orbital_scale"]
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    loaded = load_qdf_model(old)
    assert loaded.representation.orbital_scale == 1.0
    np.testing.assert_allclose(
        predict_energies(MOLS, model=loaded, dtype="float64"),
        predict_energies(MOLS, model=tiny_model(), dtype="float64"), rtol=0, atol=1e-9)
    # fine-tuning from it: the missing key is the default, so it matches a default model
    target = build_qdf_model(default_config(TINY_REP, TINY_HK))
    model_io.load_weights_into(target, old)
    source = tiny_model().state_dict()
    for key, value in target.state_dict().items():
        if not key.startswith("postprocessors"):
            assert torch.equal(value, source[key]), key
    # ... and still differs from a scaled one, named with the default's value
    scaled = build_qdf_model(default_config({**TINY_REP, "orbital_scale": 30.0}, TINY_HK))
    with pytest.raises(ModelFileError, match="orbital_scale: 1.0 in the file, 30.0 in the model"):
        model_io.load_weights_into(scaled, old)
