"""End-to-end `spktrain` runs of the SchNet baseline config (tiny sizes, CPU)."""

import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from .spktrain_runner import TINY_SCHNET, run_spktrain, spk_energy_of_qm9_molecule

TINY = [*TINY_SCHNET, "trainer.max_epochs=1", "print_config=False", "logger=csv"]


def spktrain(workdir: Path, run_id: str, *overrides: str) -> subprocess.CompletedProcess:
    return run_spktrain(workdir, run_id, "schnet_qm9_under14", *TINY, *overrides, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("spktrain")
    proc = spktrain(work, "smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work / "runs" / "smoke"


def test_best_model_loads_and_predicts(run_dir):
    from schnetpack.utils import load_model

    assert (run_dir / "best_model").is_file()
    model = load_model(str(run_dir / "best_model"))
    assert isinstance(model, torch.nn.Module)
    energy, u0 = spk_energy_of_qm9_molecule(run_dir / "best_model", cutoff=5.0)
    assert np.isfinite(energy)
    # atomrefs + mean are added back, so even a 1-epoch model is near U0 (~ -4217 eV)
    assert abs(energy - u0) < 20.0


def test_checkpoint_needs_trusted_loading(run_dir):
    """The trap: plain Lightning/SchNetPack loading fails on SchNetPack checkpoints."""
    import schnetpack
    from pytorch_lightning.plugins.io import TorchCheckpointIO

    from schnetpack_ext.task import TrustedAtomisticTask
    from schnetpack_ext.train import TrustedCheckpointIO

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        schnetpack.AtomisticTask.load_from_checkpoint(str(ckpt))
    with pytest.raises(pickle.UnpicklingError):
        TorchCheckpointIO().load_checkpoint(str(ckpt))

    task = TrustedAtomisticTask.load_from_checkpoint(str(ckpt))
    assert isinstance(task.model, torch.nn.Module)
    assert "state_dict" in TrustedCheckpointIO().load_checkpoint(str(ckpt))
    with pytest.raises(pickle.UnpicklingError):  # an explicit True is respected
        TrustedCheckpointIO().load_checkpoint(str(ckpt), weights_only=True)


def test_resume_from_last_checkpoint(run_dir):
    """Second spktrain in the same run dir resumes via trainer.fit(ckpt_path=last.ckpt)."""
    work = run_dir.parent.parent
    proc = spktrain(work, "smoke", "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Resuming from checkpoint" in proc.stdout + proc.stderr
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 1


def test_plain_atomistic_task_fails_in_spktrain(tmp_path):
    """Without the fix, spktrain crashes at trainer.test(ckpt_path="best")."""
    proc = spktrain(tmp_path, "plain", "task._target_=schnetpack.AtomisticTask", "~trainer.plugins")
    assert proc.returncode != 0
    assert "Weights only load failed" in proc.stdout + proc.stderr


def test_painn_config_composes():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="schnetpack.configs", version_base="1.2"):
        cfg = compose("train", overrides=["experiment=painn_qm9_under14"])
    assert cfg.model.representation._target_ == "schnetpack.representation.PaiNN"
    assert cfg.model.representation.n_atom_basis == 128
    assert cfg.model.representation.n_interactions == 3
    assert cfg.data._target_ == "schnetpack_ext.datasets.QM9Pack"
    assert cfg.task._target_ == "schnetpack_ext.task.TrustedAtomisticTask"
    assert cfg.trainer.plugins[0]._target_ == "schnetpack_ext.train.TrustedCheckpointIO"
    assert cfg.seed == 1729
    # last.ckpt is written every epoch (shared callbacks config), not only on improvement
    assert cfg.callbacks.model_checkpoint.save_last is False
    assert cfg.callbacks.last_checkpoint.filename == "last"
    assert cfg.callbacks.last_checkpoint.monitor is None
