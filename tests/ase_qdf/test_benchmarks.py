"""The benchmark harness runs (tiny sizes); timings themselves are not tested."""

import json
import re

import numpy as np
import pytest
from ase import Atoms

from ase_qdf.benchmarks import report, rotation
from ase_qdf.benchmarks.structures import alkane_with_atoms, linear_alkane, organic_cluster


def test_structures_have_the_requested_size_and_sane_geometry():
    decane = linear_alkane(10)
    assert decane.get_chemical_formula() == "C10H22"
    distances = decane.get_all_distances() + 10 * np.eye(len(decane))
    assert 1.0 < distances.min() < 1.2  # C-H bonds, no overlaps
    assert len(alkane_with_atoms(1000)) in range(998, 1003)
    cluster = organic_cluster(500)
    assert len(cluster) == 500
    assert (cluster.get_all_distances() + 10 * np.eye(500)).min() > 1.0


def test_rotation_benchmark_and_report(tmp_path):
    result = rotation.main([
        "--molecules", "3", "--rotations", "2",
        "--override", "model.representation.n_atom_basis=8",
        "--override", "model.output_modules.1.n_hidden=8",
        "--json", str(tmp_path / "rotation_tiny.json"),
    ])
    assert result["n_molecules"] == 3 and result["mean_abs_delta_meV"] < 1.0
    (tmp_path / "scaling.json").write_text(json.dumps([
        {"n_atoms": 11, "requested_atoms": 10, "experiment": "qdf_x", "overrides": [], "n_pairs": 90, "seconds": 0.03,
         "ms_per_atom": 3.0, "peak_rss_MiB": 500.0, "kiB_per_atom": 10.0},
        {"n_atoms": 11, "requested_atoms": 10, "experiment": "schnet_y", "overrides": [], "n_pairs": 90,
         "seconds": 0.01, "ms_per_atom": 1.0, "peak_rss_MiB": 400.0, "kiB_per_atom": 5.0},
        {"n_atoms": 11, "requested_atoms": 10, "experiment": "avg", "model_file": "a.pt", "overrides": [],
         "n_pairs": 90, "seconds": 0.06, "ms_per_atom": 6.0, "peak_rss_MiB": 600.0, "kiB_per_atom": 20.0},
    ]))
    (tmp_path / "separation_tiny.json").write_text(json.dumps(
        {"mean_abs_delta_meV": 108.2, "max_abs_delta_meV": 429.4, "copies_mean_abs_delta_meV": 0.0,
         "n_pairs": 100, "distance_A": 50.0, "dtype": "float64", "source": "tiny.pt"}))
    text = report.write_report(tmp_path).read_text()
    assert "Rotation invariance" in text
    assert "| qdf_x | 11 | 90 | 0.030 | 3.00 | 3.0 |" in text and "| schnet_y | 11 | 90 | 0.010 | 1.00 | 1.0 |" in text
    assert "--sizes 10 --experiment qdf_x,schnet_y --model avg=a.pt" in text and "| avg | 11 | 90 | 0.060 | 6.00 | 6.0 |" in text
    assert "| tiny.pt | float64 | 100 | 50 | 108.2 | 429.4 | 0 |" in text


def test_extrapolation_benchmark_writes_table_and_plots(tmp_path, model_path):
    from ase_qdf.benchmarks import extrapolation

    out = tmp_path / "bench"
    path = extrapolation.main(["--model", f"tiny={model_path}", "--budget", "tiny=none", "--splits", "test",
                               "--over15", "20", "--out-dir", str(out)])
    result = json.loads((out / "extrapolation_tiny.json").read_text())
    test, over = result["splits"]["under14_test"], result["splits"]["over15"]
    assert test["n"] == 1479 and over["n"] == 20
    assert sum(v["n"] for v in over["by_n_atoms"].values()) == 20
    assert min(int(n) for n in over["by_n_atoms"]) >= 15 and max(int(n) for n in test["by_n_atoms"]) <= 14
    # the stored predictions reproduce the stored MAE
    data = np.load(out / "extrapolation_tiny.npz")
    np.testing.assert_allclose(np.abs(data["over15_predicted"] - data["over15_reference"]).mean(), over["mae_eV"])
    np.testing.assert_allclose((data["over15_predicted"] - data["over15_reference"]).mean(),
                               over["mean_signed_error_eV"])
    text = path.read_text()
    assert "| original QDF (quoted) |" in text and "| tiny | none | stored |" in text
    assert "mean signed error at 27–29 atoms |" in text
    assert (out / "extrapolation_by_size.png").stat().st_size > 0 and (out / "extrapolation_parity.png").is_file()


def test_extrapolation_in_random_orientations_turns_each_molecule_the_same_way_every_run(tmp_path, monkeypatch):
    from ase_qdf.benchmarks import extrapolation

    seen = []

    def fake_energies(path, **kwargs):
        def energies(molecules):
            seen.append([a.copy() for a in molecules])
            return np.array([float(np.linalg.norm(a.positions)) for a in molecules])
        return energies

    monkeypatch.setattr(extrapolation, "model_energy_function", fake_energies)
    for orientation in ("stored", "random", "random"):
        result = extrapolation.evaluate_model("m", "m.pt", tmp_path, splits=(), over15=4, orientation=orientation)
        assert result["orientation"] == orientation
    stored, random_a, random_b = seen
    for s, a, b in zip(stored, random_a, random_b):
        assert s.get_chemical_symbols() == a.get_chemical_symbols()
        np.testing.assert_allclose(a.get_all_distances(), s.get_all_distances(), atol=1e-10)
        np.testing.assert_allclose(a.get_center_of_mass(), s.get_center_of_mass(), atol=1e-10)
        assert np.abs(a.positions - s.positions).max() > 0.1  # turned, not left as stored
        np.testing.assert_array_equal(a.positions, b.positions)  # repeatable
    with pytest.raises(ValueError, match="orientation"):
        extrapolation.evaluate_model("m", "m.pt", tmp_path, splits=(), over15=0, orientation="canonical")


def test_extrapolation_energies_in_bf16_for_model_files_only(model_path, tmp_path):
    from ase.build import molecule

    from ase_qdf.benchmarks.extrapolation import model_energy_function

    molecules = [molecule("CH3CH2OH"), molecule("HCN")]
    full = model_energy_function(str(model_path), precision="full")(molecules)
    bf16 = model_energy_function(str(model_path), precision="bf16")(molecules)
    assert 0 < np.abs(bf16 - full).max() < 0.2
    with pytest.raises(ValueError, match="ase-qdf model files only"):
        model_energy_function(str(tmp_path / "best_model"), precision="bf16")


def test_errors_by_size_pools_per_size():
    from ase_qdf.benchmarks.extrapolation import errors_by_size

    result = errors_by_size(np.array([1.0, -2.0, 3.0]), np.array([0.0, 0.0, 0.0]), np.array([5, 5, 6]))
    assert result["mae_eV"] == 2.0 and result["mean_signed_error_eV"] == 2.0 / 3.0
    assert result["by_n_atoms"][5] == {"n": 2, "mae_eV": 1.5, "rmse_eV": np.sqrt(2.5), "mean_signed_error_eV": -0.5}
    assert result["by_n_atoms"][6]["mean_signed_error_eV"] == 3.0


def test_growth_with_size_compares_the_ratio_of_errors_with_the_ratio_of_sizes(tmp_path):
    from ase_qdf.benchmarks import extrapolation

    rng = np.random.default_rng(0)
    n_atoms = np.concatenate([np.full(4000, 15), rng.choice([27, 28, 29], 400)])
    size_ratio = n_atoms[n_atoms >= 27].mean() / 15
    # an error proportional to the number of atoms grows exactly as the size: not sub-linear
    linear = extrapolation.growth_with_size(0.004 * n_atoms * rng.choice([-1, 1], n_atoms.size), n_atoms)
    assert linear["ratio"] == pytest.approx(size_ratio) and linear["size_ratio"] == pytest.approx(size_ratio)
    assert not linear["sublinear"]
    # the same scatter at every size: ratio about 1, the interval well below the size ratio
    flat = extrapolation.growth_with_size(rng.normal(0, 0.05, n_atoms.size), n_atoms)
    assert flat["ratio_low"] < flat["ratio"] < flat["ratio_high"] < size_ratio and flat["sublinear"]
    assert 0.85 < flat["ratio"] < 1.15 and (flat["n_small"], flat["n_large"]) == (4000, 400)
    # a 95 % interval: its width is that of the normal approximation (delta method) to within 8 %
    # (a 90 % interval would be 16 % narrower, a 99 % one 31 % wider)
    absolute = np.abs(rng.normal(0, 0.05, n_atoms.size))
    wide = extrapolation.growth_with_size(absolute, n_atoms)
    small, large = absolute[n_atoms == 15], absolute[n_atoms >= 27]
    relative_se = np.sqrt(small.var() / small.size / small.mean()**2 + large.var() / large.size / large.mean()**2)
    expected_width = 2 * 1.96 * wide["ratio"] * relative_se
    assert wide["ratio_high"] - wide["ratio_low"] == pytest.approx(expected_width, rel=0.08)

    # the point ratio below the size ratio is not enough: 40 large molecules with widely spread
    # errors (mean 1.7 times the small ones') leave an interval across the size ratio
    few = np.concatenate([np.full(4000, 15), np.full(40, 27)])
    close = np.concatenate([np.full(4000, 0.05), np.tile([0.02, 0.15], 20)])
    close_growth = extrapolation.growth_with_size(close, few)
    assert close_growth["ratio"] == pytest.approx(1.7) and close_growth["ratio"] < 27 / 15
    assert close_growth["ratio_low"] < 27 / 15 < close_growth["ratio_high"] and not close_growth["sublinear"]

    # the groups are resampled independently: equal groups still give a spread of ratios
    twins = np.concatenate([np.full(300, 15), np.full(300, 27)])
    same = np.tile(rng.normal(0, 0.05, 300), 2)
    assert extrapolation.growth_with_size(same, twins)["ratio_high"] > 1.05
    # every resample counted, also when a large group is drawn in several blocks
    big = np.concatenate([np.full(20_000, 15), np.full(50, 27)])
    assert extrapolation.growth_with_size(np.ones(big.size), big, resamples=250)["resamples"] == 250
    with pytest.raises(ValueError, match="27, 28, 29"):
        extrapolation.growth_with_size(np.ones(3), np.array([15, 16, 17]))

    # the report's growth table covers the records with saved over15 predictions, and says how each grows
    for label, errors, sizes in (("flat", rng.normal(0, 0.05, n_atoms.size), n_atoms),
                                 ("steep", 0.01 * n_atoms**2, n_atoms), ("close", close, few),
                                 ("no_large", np.ones(3), np.array([15, 16, 17]))):
        extrapolation.write_record(tmp_path, {"label": label, "budget": "", "splits": {}},
                                   {"over15_predicted": errors, "over15_reference": np.zeros(sizes.size),
                                    "over15_n_atoms": sizes})
    (tmp_path / "extrapolation_no_predictions.json").write_text(json.dumps({"label": "no_predictions", "splits": {}}))
    text = extrapolation.write_report(tmp_path).read_text()
    growth = text.split("## Growth with size")[1]
    assert re.search(r"\| flat \|[^\n]*\| yes \|", growth) and re.search(r"\| steep \|[^\n]*\| no \|", growth)
    assert re.search(r"\| close \|[^\n]*\| undecided \|", growth)
    assert "no_predictions" not in growth and "no_large" not in growth


def test_rotation_benchmark_on_a_model_file(tmp_path, model_path):
    result = rotation.main(["--model", str(model_path), "--molecules", "2", "--rotations", "2"])
    assert result["n_molecules"] == 2 and result["source"] == str(model_path)
    assert result["max_abs_delta_meV"] < 1.0  # the tiny model is smooth (SiLU)


def test_screening_benchmark_times_every_path(model_path, tmp_path):
    from ase_qdf.benchmarks import screening

    result = screening.main(["--model", str(model_path), "--molecules", "6", "--repeats", "1",
                             "--also", str(model_path), "--json", str(tmp_path / "screening.json")])
    assert result["n_molecules"] == 6
    assert set(result["molecules_per_s"]) == {"qdf screen (file to CSV)", "predict_energies (Atoms)",
                                              "predict_energies (Atoms, bf16)",
                                              f"predict_energies (Atoms, {model_path})",
                                              "SchNet (Atoms, SchNetPack)", "PaiNN (Atoms, SchNetPack)"}
    assert all(v > 0 for v in result["molecules_per_s"].values())
    assert result["ratio_vs_schnet"]["SchNet (Atoms, SchNetPack)"] == 1.0
    assert result["split"] == "test" and result["mean_atoms"] <= 14


def test_screening_benchmark_on_larger_molecules(model_path):
    from ase_qdf.benchmarks import screening

    result = screening.main(["--model", str(model_path), "--molecules", "3", "--repeats", "2", "--split", "over15"])
    assert result["split"] == "over15" and result["n_molecules"] == 3
    assert result["mean_atoms"] >= 15
    assert all(v > 0 for v in result["molecules_per_s"].values())
    # every in-memory path timed once per round; the reported rate is its best round
    by_round = result["molecules_per_s_by_round"]
    assert set(by_round) == set(result["molecules_per_s"]) - {"qdf screen (file to CSV)"}
    assert all(len(v) == 2 and max(v) == result["molecules_per_s"][k] for k, v in by_round.items())


def test_screening_paths_each_run_the_model_they_are_named_after(model_path, monkeypatch):
    """Each timed path calls its own model: a closure that read a loop variable late would time
    the last model under every name, and the record would still look plausible."""
    import importlib

    from ase_qdf.benchmarks import screening
    from ase_qdf.benchmarks.models import neighbor_cutoff

    predict = importlib.import_module("ase_qdf.predict")  # the module; ase_qdf.predict is also a function
    ran = []

    def fake_predict(molecules, model=None, **kwargs):
        ran.append((model.precision, model.model))
        return np.zeros(len(molecules))

    def fake_spk(model, molecules, cutoff, **kwargs):
        ran.append((type(model.representation).__name__, cutoff))
        return np.zeros(len(molecules))

    monkeypatch.setattr(predict, "predict_energies", fake_predict)
    monkeypatch.setattr(screening, "spk_energies", fake_spk)
    also = predict.QDFEngine("qdf_qm9", device="cpu").model
    screening.main(["--model", str(model_path), "--molecules", "2", "--repeats", "1", "--also", "qdf_qm9"])
    (main_precision, main_model), (bf16_precision, bf16_model), (_, also_model), schnet, painn = ran
    assert main_precision != "bf16" and bf16_precision == "bf16" and bf16_model is main_model
    assert also_model is not main_model and also_model.qdf_sha256 == also.qdf_sha256
    assert schnet == ("SchNet", neighbor_cutoff("schnet_qm9_under14"))
    assert painn == ("PaiNN", neighbor_cutoff("painn_qm9_under14"))


def test_screening_rounds_call_every_path_once_a_round_in_rotated_order():
    from ase_qdf.benchmarks.screening import _timed_in_rounds

    calls = []
    times = _timed_in_rounds({name: (lambda name=name: calls.append(name)) for name in "abc"}, repeats=4)
    assert calls == list("abc" "bca" "cab" "abc")
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}


def test_dft_benchmark_times_pyscf_beside_qdf(model_path, tmp_path):
    pytest.importorskip("pyscf")
    from ase_qdf.benchmarks import dft

    # water (3 atoms): a B3LYP/6-31G(2df,p) single point in about a second
    result = dft.main(["--model", str(model_path), "--sizes", "3", "--repeats", "1",
                       "--json", str(tmp_path / "dft.json")])
    (row,) = result["rows"]
    assert row["n_atoms"] == 3 and row["formula"] == "H2O" and row["dft_converged"]
    assert row["dft_s"] > 0 and row["qdf_s"] > 0 and row["dft_over_qdf"] == row["dft_s"] / row["qdf_s"]
    assert -76.5 < row["dft_energy_Ha"] < -76.3
    assert (tmp_path / "dft.json").is_file()


def test_learning_curves_join_resumed_logs_and_write_table(tmp_path):
    from ase_qdf.benchmarks import curves

    run = tmp_path / "run"
    header = "epoch,step,train_energy_U0_mae,val_energy_U0_mae,test_energy_U0_mae\n"
    for version, body in enumerate(["0,10,0.9,,\n0,10,,0.8,\n1,20,,0.5,\n",
                                    "2,30,,0.6,\n3,40,,0.4,\n3,40,,,0.45\n"]):
        (run / "csv" / f"version_{version}").mkdir(parents=True)
        (run / "csv" / f"version_{version}" / "metrics.csv").write_text(header + body)
    epochs, maes, test = curves.learning_curve(curves.read_metrics(run))
    assert epochs == [0, 1, 2, 3] and maes == [0.8, 0.5, 0.6, 0.4] and test == 0.45

    out = tmp_path / "curves.png"
    summary = curves.main(["--run", f"demo={run}", "--out", str(out)])
    assert summary["demo"] == {"epochs": 4, "val_mae_last": 0.4, "val_mae_best": 0.4, "test_mae": 0.45}
    assert out.stat().st_size > 0
    assert "| demo | 4 | 0.4000 | 0.4000 | 0.4500 |" in out.with_suffix(".md").read_text()
    with pytest.raises(FileNotFoundError, match="no metrics.csv"):
        curves.read_metrics(tmp_path / "empty")


def test_throughput_runs_variants_beside_schnet(tmp_path):
    from ase_qdf.benchmarks import throughput

    assert throughput.parse_variant("QDF D8=qdf_qm9_relu:a=1, b=2") == ("QDF D8", ("qdf_qm9_relu", ["a=1", "b=2"]))
    with pytest.raises(ValueError, match="NAME=EXPERIMENT"):
        throughput.parse_variant("qdf_qm9_relu")
    with pytest.raises(SystemExit):  # a bad override is an argparse error, before any timing
        throughput.main(["--models", "", "--variant", "bad=qdf_qm9_relu:model.representation.no_such_key=1"])
    out = tmp_path / "throughput.json"
    results = throughput.main([
        "--molecules", "6", "--batch-size", "3", "--inference-batch-sizes", "3", "--models", "SchNet",
        "--variant", "QDF tiny=qdf_qm9_relu:model.representation.n_atom_basis=8,model.output_modules.1.n_hidden=8",
        "--json", str(out)])
    rows = json.loads(out.read_text())["models"]
    assert list(rows) == ["SchNet", "QDF tiny"] == list(results["models"])
    tiny = rows["QDF tiny"]
    assert tiny["experiment"] == "qdf_qm9_relu" and tiny["train_hk_mode"] == "joint"
    assert tiny["parameters"] < 20_000  # the overrides reached the model (D = 250 has 392,562)
    assert tiny["train_mol_per_s"] > 0 and tiny["inference_mol_per_s_bs3"] > 0
    assert tiny["train_ratio_vs_schnet"] == pytest.approx(tiny["train_mol_per_s"] / rows["SchNet"]["train_mol_per_s"])


def test_throughput_times_qdf_inference_through_the_engine_without_the_hk_head(monkeypatch):
    # the benchmark must time what users run: QDFEngine, energy only
    from ase.build import molecule

    from schnetpack_ext.atomistic import HKPotential
    from ase_qdf.benchmarks import throughput
    from ase_qdf.benchmarks.models import model_from_experiment
    from ase_qdf.predict import QDFEngine

    calls = []
    original = QDFEngine.evaluate
    monkeypatch.setattr(QDFEngine, "evaluate", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))

    def no_hk(self, inputs):
        raise AssertionError("the HK head ran at inference")

    monkeypatch.setattr(HKPotential, "forward", no_hk)
    model = model_from_experiment("qdf_qm9_relu", ["model.representation.n_atom_basis=8",
                                                   "model.output_modules.1.n_hidden=8"])
    molecules = [molecule(name) for name in ("H2O", "CH4", "HCN", "C2H6")]
    assert throughput.inference_throughput(model, molecules, cutoff=4.75, batch_size=2) > 0
    assert len(calls) == 3  # warm-up + two batches


def test_separation_benchmark_tells_local_from_molecule_wide_normalisation(tmp_path, model_path):
    from ase_qdf.benchmarks import separation
    from ase_qdf.model_io import load_qdf_model, save_qdf_model

    from tests.ase_qdf.conftest import tiny_model

    options = ["--molecules", "6", "--pairs", "4", "--distance", "30"]
    paper = separation.main(["--model", str(model_path), *options])
    assert paper["n_pairs"] == 4 and paper["source"] == str(model_path)
    # the molecule-wide scale couples two molecules 30 A apart; two copies of one molecule
    # keep the scale, hence their energy
    assert paper["mean_abs_delta_meV"] > 1e-3
    assert paper["copies_mean_abs_delta_meV"] < 1e-6

    local_path = tmp_path / "tiny_local.pt"
    save_qdf_model(tiny_model(normalisation="local"), local_path)
    assert load_qdf_model(local_path).representation.normalisation == "local"
    local = separation.main(["--model", str(local_path), *options])
    assert local["mean_abs_delta_meV"] < 1e-6 and local["copies_mean_abs_delta_meV"] < 1e-6


def test_separated_molecules_do_not_overlap():
    from ase.build import molecule

    from ase_qdf.benchmarks.separation import separated

    a, b = molecule("CH3CH2OH"), molecule("C6H6")
    pair = separated(a, b, 12.0)
    assert len(pair) == len(a) + len(b)
    gap = pair.positions[len(a):, 0].min() - pair.positions[:len(a), 0].max()
    assert gap == pytest.approx(12.0)


def test_the_plots_draw_a_readable_selection_and_the_table_every_model(tmp_path):
    from ase_qdf.benchmarks import extrapolation

    def result(label):
        return {"label": label, "budget": "", "splits": {"over15": {"n": 1, "mae_eV": 0.1, "by_n_atoms": {
            "15": {"n": 1, "mae_eV": 0.1, "mean_signed_error_eV": 0.1}}}}}

    few = [result(f"m{k}") for k in range(3)]
    assert extrapolation.plotted(few) == few
    many = [result(f"m{k:02d}") for k in range(extrapolation.MAX_PLOTTED + 1)]
    assert extrapolation.plotted(many) == many[:extrapolation.MAX_PLOTTED]  # no headline model among them
    many += [result("painn_h200_9min"), result("qdf_qm9_shipped")]
    assert [r["label"] for r in extrapolation.plotted(many)] == ["qdf_qm9_shipped", "painn_h200_9min"]
    assert [r["label"] for r in extrapolation.plotted(many, ["m03", "m01"])] == ["m03", "m01"]
    with pytest.raises(ValueError, match="nope"):
        extrapolation.plotted(many, ["m01", "nope"])
    with pytest.raises(ValueError, match="at most"):
        extrapolation.plotted(many, [r["label"] for r in many])

    for r in many:
        (tmp_path / f"extrapolation_{r['label']}.json").write_text(json.dumps(r))
    text = extrapolation.write_report(tmp_path, ["m05"]).read_text()
    headline, every = text.split("## Every record")
    assert all(f"| {r['label']} |" in every for r in many)
    assert "| m05 |" in headline and "| m04 |" not in headline and "| original QDF (quoted) |" in headline
    assert f"Plotted (1 of {len(many)}): `m05`." in headline
    few_dir = tmp_path / "few"
    few_dir.mkdir()
    for r in few:
        (few_dir / f"extrapolation_{r['label']}.json").write_text(json.dumps(r))
    text = extrapolation.write_report(few_dir).read_text()
    assert "## Headline" not in text and all(f"| {r['label']} |" in text for r in few)
    assert (tmp_path / "extrapolation_by_size.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        extrapolation.main(["--report-only", "--out-dir", str(tmp_path), "--plot", "nope"])


def test_neighbourhood_weights_count_the_atoms_within_the_local_cutoff():
    from ase_qdf.benchmarks.neighbourhoods import compare_neighbourhoods, neighbourhood_weights

    # a lone atom weighs 1 (itself); a pair at 1 Å (inside cutoff - width) 2 each;
    # at 3.25 Å (half way through the switch) 1.5 each; at 5 Å (beyond) 1 each
    molecules = [Atoms("H"), Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]]),
                 Atoms("H2", positions=[[0, 0, 0], [3.25, 0, 0]]), Atoms("H2", positions=[[0, 0, 0], [5, 0, 0]])]
    weights = neighbourhood_weights(molecules, cutoff=4.0, width=1.5)
    assert weights == pytest.approx([1, 2, 2, 1.5, 1.5, 1, 1])
    # chunks of one molecule (padding to other sizes) change nothing
    assert neighbourhood_weights(molecules, 4.0, 1.5, chunk=1) == pytest.approx(weights)

    chain = [Atoms("H4", positions=[[k, 0, 0] for k in range(4)])]  # inner atoms: 4, ends: 4 within 4 Å
    result = compare_neighbourhoods(molecules, chain, cutoffs=[4.0, 1.6], width=0.5)
    assert result["4"]["reference_max"] == pytest.approx(2.0)
    assert result["4"]["larger_fraction_above_reference_max"] == 1.0  # 4 atoms see 4 > 2
    assert result["1.6"]["larger_max"] == pytest.approx(3.0)  # only the nearest neighbours at 1 Å
    assert result["1.6"]["larger_fraction_above_reference_max"] == pytest.approx(0.5)  # the two inner atoms
    with pytest.raises(ValueError, match="width"):
        compare_neighbourhoods(molecules, chain, cutoffs=[0.4], width=0.5)


def test_signed_error_splits_by_the_fraction_of_atoms_above_the_training_range():
    from ase_qdf.benchmarks.neighbourhoods import fraction_above, signed_error_by_fraction

    pair = Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]])  # both atoms weigh 2
    apart = Atoms("H2", positions=[[0, 0, 0], [9, 0, 0]])  # both weigh 1
    triple = Atoms("H3", positions=[[0, 0, 0], [1, 0, 0], [9, 0, 0]])  # 2, 2, 1
    assert fraction_above([pair, apart, triple], 4.0, 1.5, limit=1.5) == pytest.approx([1, 0, 2 / 3])

    # 15-atom molecules whose error falls with the fraction; 18-atom ones where it does not
    n_atoms = np.array([15] * 6 + [18] * 3)
    fraction = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.2, 0.2, 0.2])
    error = np.array([0.3, 0.2, 0.1, 0.0, -0.1, -0.2, 0.05, 0.05, 0.05])
    result = signed_error_by_fraction(error, n_atoms, fraction)
    assert result["15-17"]["n"] == 6 and result["15-17"]["correlation"] == pytest.approx(-1.0)
    assert result["15-17"]["tercile_mean_signed_error_eV"] == pytest.approx([0.25, 0.05, -0.15])
    assert result["15-17"]["tercile_mean_fraction"] == pytest.approx([0.05, 0.25, 0.45])
    assert result["18-20"]["tercile_mean_signed_error_eV"] == pytest.approx([0.05] * 3)
    assert result["18-20"]["correlation"] != result["18-20"]["correlation"]  # nan: nothing varies
    assert "21-23" not in result


def test_blend_chooses_the_weight_on_validation_and_writes_a_record(tmp_path):
    from ase_qdf.benchmarks import blend, extrapolation

    reference = {"under14_val": np.array([1.0, 2.0, 3.0, 4.0]), "over15": np.array([10.0, 20.0])}
    n_atoms = {"under14_val": np.array([5, 6, 7, 8]), "over15": np.array([15, 29])}

    def record(label, val_offset, over15_offset):
        arrays = {}
        for split, offset in (("under14_val", val_offset), ("over15", over15_offset)):
            arrays[f"{split}_predicted"] = reference[split] + offset
            arrays[f"{split}_reference"], arrays[f"{split}_n_atoms"] = reference[split], n_atoms[split]
        extrapolation.write_record(tmp_path, {"label": label, "model": f"{label}.pt", "budget": f"{label} budget",
                                              "orientation": "random", "splits": {}}, arrays)
        return arrays

    # errors +0.3 and -0.1 on validation: 0.75 of the second cancels them; over15 follows that choice
    first, second = record("a", 0.3, 0.4), record("b", -0.1, 0.0)
    blended = blend.blend_predictions([first, second], step=0.05)
    assert blended["weights"] == pytest.approx([0.25, 0.75])
    assert blended["arrays"]["under14_val_predicted"] == pytest.approx(reference["under14_val"])
    assert blended["arrays"]["over15_predicted"] == pytest.approx(reference["over15"] + 0.1)
    assert blended["validation_mae_by_weights"]["1,0"] == pytest.approx(0.3)
    assert len(blended["validation_mae_by_weights"]) == 21

    result = blend.main(["--models", "a,b", "--label", "ab", "--out-dir", str(tmp_path)])
    assert result["weights"] == pytest.approx([0.25, 0.75]) and result["orientation"] == "random"
    assert result["splits"]["over15"]["mae_eV"] == pytest.approx(0.1)
    # the record keeps what its members were, since a label can later name another model
    assert result["member_models"] == ["a.pt", "b.pt"] and result["member_budgets"] == ["a budget", "b budget"]
    assert "| ab |" in extrapolation.write_report(tmp_path).read_text()
    # a weight chosen elsewhere is used as given, and the record says where it came from
    # for two models one number is B's weight
    fixed = blend.main(["--models", "a,b", "--label", "ab_fixed", "--out-dir", str(tmp_path), "--weight", "0.25",
                        "--weight-from", "chosen on rotated validation"])
    assert fixed["weights"] == [0.75, 0.25] and "fixed, chosen on rotated validation" in fixed["budget"]
    assert fixed["splits"]["over15"]["mae_eV"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="summing to 1"):
        blend.blend_predictions([first, second], weights=[-0.5, 1.5])

    # three members: errors +0.3, -0.1 and -0.3 on validation; the grid finds a cancelling mixture
    # (several do; the first in grid order is kept), and over15 follows it
    third = record("c", -0.3, -0.2)
    three = blend.main(["--models", "a,b,c", "--label", "abc", "--out-dir", str(tmp_path), "--step", "0.25"])
    assert len(three["validation_mae_by_weights"]) == 15  # (4 + 2 choose 2) points of the 0.25 simplex grid
    w = np.asarray(three["weights"])
    assert w.sum() == pytest.approx(1.0) and 0.3 * w[0] - 0.1 * w[1] - 0.3 * w[2] == pytest.approx(0.0)
    assert three["splits"]["under14_val"]["mae_eV"] == pytest.approx(0.0, abs=1e-12)
    assert three["splits"]["over15"]["mae_eV"] == pytest.approx(abs(0.4 * w[0] - 0.2 * w[2]))
    fixed3 = blend.blend_predictions([first, second, third], weights=[0.5, 0.25, 0.25])
    assert fixed3["arrays"]["over15_predicted"] == pytest.approx(reference["over15"] + 0.15)
    with pytest.raises(ValueError, match="one weight in"):
        blend.blend_predictions([first, second, third], weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="at least two records"):
        blend.blend_predictions([first])
    with pytest.raises(ValueError, match="step dividing 1"):
        blend.simplex_grid(3, 0.3)
    with pytest.raises(ValueError, match="positive"):
        blend.simplex_grid(2, 0.0)
    assert blend.simplex_grid(2, 0.5).tolist() == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]

    shifted = dict(second, over15_reference=reference["over15"] + 1.0)  # other molecules
    with pytest.raises(ValueError, match="different over15 molecules"):
        blend.blend_predictions([first, shifted])
    with pytest.raises(ValueError, match="under14_val"):
        blend.blend_predictions([{k: v for k, v in first.items() if "val" not in k}, second])


def test_scaling_times_a_model_file_through_the_calculators_code(model_path):
    from ase_qdf.benchmarks.scaling import measure_one

    row = measure_one(10, experiment="tiny", model_file=str(model_path), repeats=1)
    assert row["model_file"] == str(model_path) and row["experiment"] == "tiny"
    # an 11-atom alkane: every atom within the 4.75 Å cutoff of some other, pairs counted both ways
    assert row["n_atoms"] == 11 and row["n_pairs"] > 0 and row["n_pairs"] % 2 == 0
    assert row["seconds"] > 0 and row["peak_rss_MiB"] > 0
