"""The model shipped inside the package: it loads (SHA-256 checked), and it is a trained model."""

from pathlib import Path

import numpy as np
from ase.io import read
from scipy.spatial.transform import Rotation

from ase_qdf import QDFCalculator, model_io, predict_energies
from ase_qdf.benchmarks.rotation import rotated_copies

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "qm9_sample.extxyz"


def test_shipped_model_loads_with_its_registered_checksum():
    entry = model_io.registry_entry()
    model = model_io.load_default_model()
    assert model.qdf_sha256 == entry["sha256"] == model_io.file_sha256(model_io.default_model_path())
    # it was trained: the card's provenance travels in the file
    assert model.qdf_metadata["experiment"] == "qdf_qm9_relu_hk_refit"
    assert model.qdf_metadata["energy_experiment"] == "qdf_qm9_relu_phase25_order17"
    assert model.qdf_metadata["init_from"] == "docs/benchmarks/training_qdf_relu_bf16/qdf_qm9_phase25_order17.pt"
    assert model.qdf_metadata["augmentation"] == "RandomRotation"


def test_shipped_model_predicts_unseen_qm9_molecules():
    # the first 100 frames are under14 *test* molecules, never used in training or selection
    molecules = read(SAMPLE, ":100")
    reference = np.array([a.info["qm9_U0_eV"] for a in molecules])
    energies = predict_energies(molecules)
    mae = np.abs(energies - reference).mean()
    # an untrained model is off by tens of eV; the composition-only fit by 0.96 eV.
    # The bound follows the shipped model (docs/model_card.md: 0.0476 eV test MAE; 0.051 on
    # these 100) with a margin.
    assert mae < 0.12, mae
    # users' molecules come in any orientation: trained on randomly rotated molecules, the
    # model is as accurate for them (0.0470 eV on the whole test split; 0.051 on these 100)
    rotated = predict_energies(rotated_copies(molecules, 1, seed=0))
    assert np.abs(rotated - reference).mean() < 0.12


def _rotation_errors(calc, molecules):
    rotations = Rotation.random(len(molecules), random_state=0).as_matrix()
    deltas = []
    for atoms, rotation in zip(molecules, rotations):
        atoms = atoms.copy()
        atoms.calc = calc
        energy = atoms.get_potential_energy()
        atoms.positions = (atoms.positions - atoms.positions.mean(0)) @ rotation.T
        deltas.append(abs(atoms.get_potential_energy() - energy))
    return np.array(deltas)


def test_shipped_model_rotation_error_is_as_documented():
    # docs/model_card.md: ReLU functional; the shipped file evaluates on Lebedev order 17
    # (phase 25 trained on it; phases 1-24 on order 11). Mean |dE| over 50 test molecules x 5 rotations as in the card:
    # 9.9 meV on order 17, 26.1 meV on order 11 (the original QDF: 62 meV); on these 8,
    # one rotation each: 7.8 and 23.7 meV. It moves with training (on order 11, 27.0, 29.7,
    # 34.8, 34.5, 33.2, 27.5, 24.7, 25.7, 23.6, 23.7, 14.9, 15.8, 23.1, 23.6, 23.7 meV on these 8 for phases 9
    # to 18, 20, 22, 23, 24 and 25), so the bounds sit well above the shipped values rather than at them. The card's
    # ratio between the grids (2.6x) is a mean over 250 rotations; 8 are too few to pin it (3.0x
    # for phase 25, 3.3x for phase 24, 2.3x for phase 23), so only their order is asserted.
    molecules = read(SAMPLE, "100:108")  # over15 molecules
    calc = QDFCalculator(dtype="float64")
    assert calc.model.representation.hyperparameters["lebedev_order"] == 17
    deltas = _rotation_errors(calc, molecules)
    assert deltas.mean() < 0.02, deltas
    calc.model.representation.set_lebedev_order(11)
    coarser = _rotation_errors(QDFCalculator(model=calc.model, dtype="float64"), molecules)
    assert deltas.mean() < coarser.mean() < 0.04, (deltas, coarser)


def test_qdf_info_prints_the_model_card(capsys):
    from ase_qdf import cli

    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert model_io.registry_entry()["sha256"] in out
    assert "# Model card: `qdf_qm9`" in out and "under14` test MAE" in out


def test_the_shipped_average_is_the_registered_pair_and_beats_its_first_member():
    average = model_io.load_model_file_or_name("qdf_qm9_average")
    assert average.qdf_sha256 == model_io.registry_entry("qdf_qm9_average")["sha256"]
    # it names exactly the files it averages: the shipped single model and the 3.0 Å local model (phase 31)
    assert [m["sha256"] for m in average.qdf_metadata["members"]] == [
        model_io.registry_entry("qdf_qm9")["sha256"],
        model_io.file_sha256(Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "training_qdf_relu_bf16"
                             / "qdf_qm9_phase31_local_cutoff30_continued5.pt")]
    assert average.weights.tolist() == [0.6, 0.4]
    assert [m.representation.normalisation for m in average.members] == ["molecule", "local"]
    molecules = read(SAMPLE, ":100")
    reference = np.array([a.info["qm9_U0_eV"] for a in molecules])
    single = predict_energies(molecules, model="qdf_qm9")
    averaged = predict_energies(molecules, model="qdf_qm9_average")
    # on these 100 test molecules: 0.0514 eV alone, 0.0461 averaged (whole test split: 0.0476, 0.0424)
    assert np.abs(averaged - reference).mean() < np.abs(single - reference).mean() - 0.002


def test_the_shipped_hybrid_is_the_registered_quintet_and_beats_the_average():
    hybrid = model_io.load_model_file_or_name("qdf_qm9_hybrid")
    assert hybrid.qdf_sha256 == model_io.registry_entry("qdf_qm9_hybrid")["sha256"]
    benchmarks = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
    # it names exactly the files it averages: the shipped model, the local model (phase 31), the three PaiNN members
    assert [m["sha256"] for m in hybrid.qdf_metadata["members"]] == [
        model_io.registry_entry("qdf_qm9")["sha256"],
        model_io.file_sha256(benchmarks / "training_qdf_relu_bf16" / "qdf_qm9_phase31_local_cutoff30_continued5.pt"),
        model_io.file_sha256(benchmarks / "training_painn_member" / "painn_qm9_member.pt"),
        model_io.file_sha256(benchmarks / "training_painn_member2" / "painn_qm9_member2.pt"),
        model_io.file_sha256(benchmarks / "training_painn_member3" / "painn_qm9_member3.pt")]
    assert hybrid.weights.tolist() == [0.21, 0.14, 0.20, 0.15, 0.30]
    assert [type(m.representation).__name__ for m in hybrid.members] == ["QDF", "QDF", "PaiNN", "PaiNN", "PaiNN"]
    molecules = read(SAMPLE, ":100")
    reference = np.array([a.info["qm9_U0_eV"] for a in molecules])
    average = predict_energies(molecules, model="qdf_qm9_average")
    both = predict_energies(molecules, model="qdf_qm9_hybrid")
    # on these 100 test molecules: 0.0461 eV for the average, 0.0314 for the hybrid
    # (whole test split: 0.0424, 0.0305)
    assert np.abs(both - reference).mean() < np.abs(average - reference).mean() - 0.004
