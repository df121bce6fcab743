import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.md.verlet import VelocityVerlet
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.optimize import BFGS
from ase import units
from scipy.spatial.transform import Rotation

from ase_qdf import InvalidMoleculeError, QDFCalculator, model_io, predict_energies
from ase_qdf.predict import QM9_ATOMREFS_EV


@pytest.fixture
def calc64(model64):
    return QDFCalculator(model64, device="cpu", dtype="float64")


def test_energy_matches_batch_api(model_path):
    mols = [molecule("CH3CH2OH"), molecule("HCN"), molecule("H2O")]
    for dtype in ("float32", "float64"):
        calc = QDFCalculator(model_path, device="cpu", dtype=dtype)
        batch = predict_energies(mols, model=model_path, device="cpu", dtype=dtype)
        single = []
        for atoms in mols:
            atoms = atoms.copy()
            atoms.calc = calc
            single.append(atoms.get_potential_energy())
        np.testing.assert_allclose(single, batch, rtol=0, atol=1e-4 if dtype == "float32" else 1e-9)


def test_energy_convention_and_per_atom_energies(calc64):
    atoms = molecule("CH3OH")
    atoms.calc = calc64
    energy = atoms.get_potential_energy()
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert energies.sum() == pytest.approx(energy, abs=1e-9)
    atomization = calc64.get_property("atomization_energy", atoms)
    assert atomization == pytest.approx(energy - QM9_ATOMREFS_EV[atoms.numbers].sum(), abs=1e-9)
    # the QM9 U0 atomrefs (Hartree) carry the total energy
    hartree = {1: -0.500273, 6: -37.846772, 8: -75.064579}
    refs = sum(hartree[z] for z in atoms.numbers) * 27.211386245988
    assert energy - atomization == pytest.approx(refs, abs=1e-3)
    assert atoms.calc.get_property("free_energy", atoms) == energy


def test_forces_match_finite_differences(calc64):
    atoms = molecule("H2CO")
    atoms.rattle(0.02, seed=1)
    atoms.calc = calc64
    forces = atoms.get_forces()
    h = 1e-4
    numeric = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            displaced = atoms.copy()
            displaced.calc = calc64
            displaced.positions[i, k] += h
            ep = displaced.get_potential_energy()
            displaced.positions[i, k] -= 2 * h
            em = displaced.get_potential_energy()
            numeric[i, k] = -(ep - em) / (2 * h)
    np.testing.assert_allclose(forces, numeric, rtol=1e-4, atol=1e-6)
    # no net force (exact: translation invariance); no net torque up to the
    # angular quadrature error of the Lebedev grid
    scale = np.abs(forces).max()
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-8)
    com = atoms.positions.mean(0)
    np.testing.assert_allclose(np.cross(atoms.positions - com, forces).sum(0), 0.0, atol=1e-3 * scale)


def test_rotation_and_translation_invariance(calc64):
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc64
    e0 = atoms.get_potential_energy()
    f0 = atoms.get_forces()
    for seed, rot in enumerate(Rotation.random(3, random_state=7).as_matrix()):
        moved = atoms.copy()
        moved.positions = atoms.positions @ rot.T + np.array([1.5, -3.0, 7.0]) * (seed + 1)
        moved.calc = calc64
        assert abs(moved.get_potential_energy() - e0) < 1e-4
        np.testing.assert_allclose(moved.get_forces(), f0 @ rot.T, atol=1e-3)


def test_caching_and_forces_only_when_asked(model64, monkeypatch):
    calc = QDFCalculator(model64, device="cpu", dtype="float64")
    calls = []
    evaluate = calc.engine.evaluate

    def counting(atoms_list, forces=False):
        calls.append(forces)
        return evaluate(atoms_list, forces=forces)

    monkeypatch.setattr(calc.engine, "evaluate", counting)
    atoms = molecule("H2O")
    atoms.calc = calc
    e1 = atoms.get_potential_energy()
    assert calls == [False] and "forces" not in calc.results
    assert atoms.get_potential_energy() == e1
    atoms.get_potential_energies()
    calc.get_property("atomization_energy", atoms)
    assert calls == [False]
    atoms.get_forces()
    assert calls == [False, True]
    atoms.get_forces()
    atoms.get_potential_energy()
    assert calls == [False, True]
    atoms.positions[0, 0] += 0.05
    e2 = atoms.get_potential_energy()
    assert len(calls) == 3 and e2 != e1


def test_no_global_torch_state_changes(model_path):
    dtype, grad, threads = torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads()
    calc = QDFCalculator(model_path, device="cpu", dtype="float64")
    atoms = molecule("H2O")
    atoms.calc = calc
    atoms.get_forces()
    atoms.positions[0, 0] += 0.01
    atoms.get_potential_energy()
    with torch.no_grad():
        atoms.positions[0, 0] += 0.01
        atoms.get_forces()  # forces work even inside the caller's no_grad
        assert not torch.is_grad_enabled()
    assert (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads()) == (dtype, grad, threads)


def test_invalid_molecules_are_refused(calc64):
    atoms = molecule("SiH4")
    atoms.calc = calc64
    with pytest.raises(InvalidMoleculeError, match="Si"):
        atoms.get_potential_energy()
    atoms = molecule("H2O", vacuum=4.0)
    atoms.pbc = True
    atoms.calc = calc64
    with pytest.raises(InvalidMoleculeError, match="periodic"):
        atoms.get_potential_energy()


def test_missing_shipped_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "models_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="shipped QDF model"):
        QDFCalculator()


def test_bfgs_lowers_the_energy(calc64):
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=3)
    atoms.calc = calc64
    e0 = atoms.get_potential_energy()
    opt = BFGS(atoms, maxstep=0.05, logfile=None)
    opt.run(fmax=1e-3, steps=5)
    assert opt.get_number_of_steps() >= 1
    assert atoms.get_potential_energy() < e0


def test_short_velocity_verlet_md(model32):
    atoms = molecule("H2O")
    atoms.calc = QDFCalculator(model32, device="cpu", dtype="float32")
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    e0 = atoms.get_total_energy()
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs, logfile=None)
    dyn.run(8)
    assert dyn.nsteps == 8
    assert np.isfinite(atoms.positions).all()
    assert abs(atoms.get_total_energy() - e0) < 0.05


def test_lebedev_order_option_refines_the_grid_without_touching_the_callers_model(model64):
    points = model64.representation.n_grid_points
    own_order = model64.representation.hyperparameters["lebedev_order"]
    finer = 17 if own_order != 17 else 23
    calc = QDFCalculator(model64, device="cpu", dtype="float64", lebedev_order=finer)
    assert calc.model is not model64
    assert calc.model.representation.hyperparameters["lebedev_order"] == finer
    assert calc.model.representation.n_grid_points > points
    # the caller's module keeps its grid
    assert model64.representation.n_grid_points == points
    assert model64.representation.hyperparameters["lebedev_order"] == own_order

    atoms = molecule("CH3CH2OH")
    coarse = atoms.copy()
    coarse.calc = QDFCalculator(model64, device="cpu", dtype="float64")
    atoms.calc = calc
    # the same integral on a finer rule: close, but not the same numbers
    assert atoms.get_potential_energy() == pytest.approx(coarse.get_potential_energy(), abs=0.05)
    assert atoms.get_potential_energy() != coarse.get_potential_energy()
    batch = predict_energies([molecule("CH3CH2OH")], model=model64, device="cpu", dtype="float64",
                             lebedev_order=finer)
    assert batch[0] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)

    # asking for the model's own order changes nothing (and copies nothing)
    same = QDFCalculator(model64, device="cpu", dtype="float64", lebedev_order=own_order)
    assert same.model is model64

    with pytest.raises(ValueError, match="lebedev_order=4"):
        QDFCalculator(model64, device="cpu", dtype="float64", lebedev_order=4)
