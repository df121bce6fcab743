"""Run SchNetPack's ``spktrain`` in a scratch folder, as a user would (shared by tests)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

SPKTRAIN = str(Path(sys.executable).with_name("spktrain"))
if not os.path.exists(SPKTRAIN):
    SPKTRAIN = shutil.which("spktrain")


# a QDF small enough for a test run of qdf_qm9_smoke in seconds
TINY_QDF = [
    "data.max_molecules=32",
    "data.batch_size=16",
    "model.representation.n_atom_basis=8",
    "model.output_modules.1.n_hidden=8",
    "model.output_modules.1.n_layers=1",
]

# a SchNet small enough for a test run of schnet_qm9_under14 in seconds
TINY_SCHNET = [
    "data.max_molecules=100",
    "data.batch_size=16",
    "model.representation.n_atom_basis=16",
    "model.representation.n_interactions=1",
]


def run_spktrain(workdir: Path, run_id: str, experiment: str, *overrides: str,
                 timeout: int = 600) -> subprocess.CompletedProcess:
    """``spktrain experiment=... run.id=...`` with data, runs and QM9 cache under ``workdir``."""
    env = dict(os.environ, QDF_CACHE_DIR=str(workdir / "cache"))
    cmd = [SPKTRAIN, f"experiment={experiment}", f"run.work_dir={workdir}",
           f"run.data_dir={workdir}/data", f"run.id={run_id}", "print_config=False", *overrides]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def spk_energy_of_qm9_molecule(best_model: Path, cutoff: float, name: str = "dsgdb9nsd_000014"):
    """Energy of one QM9 molecule from SchNetPack's own ``SpkCalculator``, and its U0 (eV)."""
    from schnetpack.interfaces import SpkCalculator
    from schnetpack.transform import MatScipyNeighborList

    from schnetpack_ext.datasets import qm9pack_atoms

    calc = SpkCalculator(
        model=str(best_model),
        neighbor_list=MatScipyNeighborList(cutoff=cutoff),
        energy_key="energy_U0",
        force_key=None,  # energy-only models: SpkCalculator otherwise demands forces
        energy_unit="eV",
        position_unit="Ang",
    )
    _, atoms, u0 = next(m for m in qm9pack_atoms("under14", 20) if m[0] == name)
    atoms.calc = calc
    return atoms.get_potential_energy(), u0
