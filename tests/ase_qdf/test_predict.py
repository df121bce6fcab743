import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from ase_qdf import InvalidMoleculeError, QDFCalculator, QDFEngine, predict, predict_energies

NAMES = ["H2O", "CH3CH2OH", "HCN", "CH4", "CH3COF", "NH3", "C6H6", "H2CO"]


def _mols():
    return [molecule(n) for n in NAMES]


def test_mixed_size_batch_equals_one_by_one(model64):
    mols = _mols()
    batched = predict_energies(mols, model=model64, batch_size=64, device="cpu", dtype="float64")
    single = predict_energies(mols, model=model64, batch_size=1, device="cpu", dtype="float64")
    odd = predict_energies(mols, model=model64, batch_size=3, device="cpu", dtype="float64")
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-9)
    np.testing.assert_allclose(odd, single, rtol=0, atol=1e-9)
    assert batched.shape == (len(mols),)


def test_energy_independent_of_batch_companions(model32):
    target = molecule("CH3CH2OH")
    alone = predict_energies([target], model=model32, device="cpu")[0]
    # overlapping companions: molecules in one batch must not see each other
    companions = [molecule("C6H6"), molecule("H2O"), molecule("CH3COF")]
    for k in range(len(companions) + 1):
        batch = companions[:k] + [target] + companions[k:]
        e = predict_energies(batch, model=model32, device="cpu")[k]
        assert e == pytest.approx(alone, abs=1e-4)


def test_results_have_all_fields_and_forces_match_calculator(model64):
    mols = _mols()[:3]
    results = predict(mols, model=model64, forces=True, device="cpu", dtype="float64")
    calc = QDFCalculator(model64, device="cpu", dtype="float64")
    for atoms, res in zip(mols, results):
        assert res["error"] is None
        assert res["energies"].shape == (len(atoms),)
        assert res["energies"].sum() == pytest.approx(res["energy"], abs=1e-9)
        atoms.calc = calc
        np.testing.assert_allclose(res["forces"], atoms.get_forces(), atol=1e-9)
        assert res["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    assert predict(mols, model=model64, device="cpu")[0]["forces"] is None


def test_invalid_molecules_recorded_others_still_run(model32):
    bad_element = molecule("SiH4")
    radical = Atoms("CH3", positions=[[0, 0, 0], [1.08, 0, 0], [-0.54, 0.94, 0], [-0.54, -0.94, 0]])
    mols = [molecule("H2O"), bad_element, molecule("CH4"), radical, Atoms()]
    results = predict(mols, model=model32, on_error="record", device="cpu")
    assert len(results) == len(mols)
    assert [r["error"] is None for r in results] == [True, False, True, False, False]
    assert "Si" in results[1]["error"] and "odd electron" in results[3]["error"]
    assert np.isnan(results[1]["energy"])
    good = predict_energies([mols[0], mols[2]], model=model32, device="cpu")
    np.testing.assert_allclose([results[0]["energy"], results[2]["energy"]], good, atol=1e-4)
    with pytest.raises(InvalidMoleculeError, match="molecule 1: .*Si"):
        predict(mols, model=model32, device="cpu")


def test_failing_batch_is_retried_per_molecule(model32, monkeypatch):
    engine = QDFEngine(model32, device="cpu")
    evaluate = engine.evaluate

    def flaky(atoms_list, forces=False):
        if any(len(a) == 5 for a in atoms_list):  # CH4 "crashes" the model
            raise RuntimeError("boom")
        return evaluate(atoms_list, forces=forces)

    monkeypatch.setattr(engine, "evaluate", flaky)
    mols = [molecule("H2O"), molecule("CH4"), molecule("NH3")]
    results = predict(mols, model=engine, on_error="record")
    assert [r["error"] for r in results] == [None, "RuntimeError: boom", None]
    with pytest.raises(RuntimeError):
        predict(mols, model=engine)


def test_argument_checks(model32):
    with pytest.raises(ValueError, match="on_error"):
        predict([molecule("H2O")], model=model32, on_error="ignore")
    with pytest.raises(ValueError, match="dtype"):
        predict([molecule("H2O")], model=model32, dtype="float16")
    with pytest.raises(ValueError, match="precision"):
        predict([molecule("H2O")], model=model32, precision="fp8")
    assert predict([], model=model32) == []
    assert predict_energies([], model=model32).shape == (0,)


def test_loaded_module_is_not_modified(model32):
    # asking for float64 gives a converted copy; the caller's model stays float32
    predict_energies([molecule("H2O")], model=model32, device="cpu", dtype="float64")
    assert next(model32.parameters()).dtype.is_floating_point
    assert str(next(model32.representation.parameters()).dtype) == "torch.float32"


def test_bf16_precision_is_one_option_for_batch_api_and_calculator(model32):
    mols = _mols()
    full = predict_energies(mols, model=model32, device="cpu", precision="full")
    assert np.array_equal(full, predict_energies(mols, model=model32, device="cpu"))
    bf16 = predict_energies(mols, model=model32, device="cpu", precision="bf16")
    # bfloat16 functional: close to, but not equal to, full precision (random weights:
    # measured 0.06 eV; 3.4 meV on average for the trained shipped model)
    assert 0 < np.abs(bf16 - full).max() < 0.2
    atoms = molecule("CH3CH2OH")
    atoms.calc = QDFCalculator(model32, device="cpu", precision="bf16")
    assert atoms.get_potential_energy() == pytest.approx(bf16[NAMES.index("CH3CH2OH")], abs=1e-4)
    assert QDFEngine(model32, device="cpu", precision="bf16").precision == "bf16"


def test_molecules_in_pieces_are_counted_and_warned_about_with_the_molecule_wide_normalisation(model_path, tmp_path):
    import warnings

    from ase.build import molecule

    from ase_qdf.model_io import save_qdf_model
    from ase_qdf.predict import QDFEngine, fragment_counts
    from tests.ase_qdf.conftest import tiny_model

    water, methanol = molecule("H2O"), molecule("CH3OH")
    far = methanol.copy()
    far.translate([20.0, 0.0, 0.0])
    pair = water + far  # two molecules 20 A apart, one Atoms
    engine = QDFEngine(model_path, device="cpu")
    assert fragment_counts(engine.converter([water, pair, methanol])).tolist() == [1, 2, 1]
    with pytest.warns(UserWarning, match=r"CH6O2 \(2 fragments\).*compute each molecule on its own"):
        predict_energies([water, pair], model=engine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_energies([water, methanol], model=engine)  # whole molecules: no warning
        # a model with the local normalisation is additive: nothing to warn about
        local_path = tmp_path / "local.pt"
        save_qdf_model(tiny_model(normalisation="local"), local_path)
        predict_energies([pair], model=local_path)
