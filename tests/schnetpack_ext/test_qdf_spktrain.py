"""`spktrain` end to end with the shipped QDF experiments (tiny sizes, CPU)."""


import numpy as np
import pytest

from .spktrain_runner import run_spktrain, spk_energy_of_qm9_molecule


spktrain = run_spktrain


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("qdf_spktrain")
    proc = spktrain(work, "smoke", "qdf_qm9_smoke", "data.max_molecules=80")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work / "runs" / "smoke"


def test_smoke_experiment_trains_and_logs_energy_and_potential_separately(smoke_run):
    metrics = (smoke_run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for key in ("val_energy_U0_mae", "val_hk_potential_mae", "val_energy_loss",
                "val_hk_potential_loss", "test_energy_U0_mae"):
        assert key in metrics


def test_best_model_works_in_schnetpack_calculator(smoke_run):
    energy, u0 = spk_energy_of_qm9_molecule(smoke_run / "best_model", cutoff=4.75)
    assert np.isfinite(energy)
    assert abs(energy - u0) < 20.0  # atomrefs and mean are added back


def test_paper_experiment_runs_alternating_steps(tmp_path):
    proc = spktrain(
        tmp_path, "paper", "qdf_qm9_paper", "data.max_molecules=40", "trainer.max_epochs=1",
        "model.representation.n_atom_basis=16", "model.output_modules.1.n_hidden=16",
        "logger=csv",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = (tmp_path / "runs" / "paper" / "config.yaml").read_text()
    assert "grid: paper" in config and "hk_mode: alternating" in config
    assert (tmp_path / "runs" / "paper" / "best_model").is_file()
