"""Train a small QDF model with ``spktrain`` from your own experiment YAML, then use it.

    python examples/train_small.py [--workdir train_small] [--molecules 200] [--epochs 2]

Writes ``<workdir>/configs/experiment/qdf_small.yaml``, an experiment that starts
from the shipped ``qdf_qm9_smoke`` experiment (small model, QM9 ``under14``) and
overrides the subset size and the number of epochs. Then runs, inside ``<workdir>``::

    spktrain --config-dir=configs experiment=qdf_small run.id=qdf_small logger=csv

(``--config-dir`` adds ``configs/`` to the config search path; the shipped
experiments are found through the ase-qdf Hydra plugin), exports ``runs/qdf_small/best_model`` to
``<workdir>/qdf_small.pt`` with ``qdf export``'s function and predicts the energy of
one QM9 molecule with :class:`ase_qdf.QDFCalculator`. Running it again resumes the
run from ``checkpoints/last.ckpt`` (raise ``--epochs`` to train further).

QM9 comes from the ``qm9pack`` package and is cached in ``$QDF_CACHE_DIR``.
``QDF_SMOKE=1`` runs a tiny version (60 molecules, 1 epoch).
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

SMOKE = os.environ.get("QDF_SMOKE") == "1"

EXPERIMENT = """\
# @package _global_
# A small QDF run: the shipped qdf_qm9_smoke experiment on the first
# {molecules} molecules of QM9 under14 for {epochs} epoch(s).
defaults:
  - qdf_qm9_smoke
  - _self_

data:
  max_molecules: {molecules}
  batch_size: 16

trainer:
  max_epochs: {epochs}
"""


def spktrain_executable():
    path = Path(sys.executable).with_name("spktrain")
    return str(path) if path.exists() else shutil.which("spktrain")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="train_small")
    parser.add_argument("--molecules", type=int, default=60 if SMOKE else 200)
    parser.add_argument("--epochs", type=int, default=1 if SMOKE else 2)
    args = parser.parse_args(argv)

    spktrain = spktrain_executable()
    if spktrain is None:
        sys.exit("spktrain not found: install schnetpack (see docs/installation.md)")
    workdir = Path(args.workdir).resolve()
    experiment = workdir / "configs" / "experiment" / "qdf_small.yaml"
    experiment.parent.mkdir(parents=True, exist_ok=True)
    experiment.write_text(EXPERIMENT.format(molecules=args.molecules, epochs=args.epochs))

    cmd = [spktrain, f"--config-dir={workdir / 'configs'}", "experiment=qdf_small", "run.id=qdf_small", "logger=csv", "print_config=False"]
    print("running: spktrain --config-dir=configs", " ".join(cmd[2:]), f"(in {workdir})", flush=True)
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    log = workdir / "spktrain.log"
    log.write_text(proc.stdout + proc.stderr)
    best_model = workdir / "runs" / "qdf_small" / "best_model"
    if proc.returncode != 0 or not best_model.exists():
        sys.exit(f"spktrain failed (exit code {proc.returncode}); see {log}:\n{(proc.stdout + proc.stderr)[-2000:]}")
    print(f"trained: {best_model} (log: {log})")

    from ase_qdf import QDFCalculator, export_spk_model
    from schnetpack_ext.datasets import qm9pack_atoms

    model_file = workdir / "qdf_small.pt"
    # the same as: qdf export runs/qdf_small/best_model qdf_small.pt --trust-pickle
    sha = export_spk_model(best_model, model_file, trust_pickle=True,
                           metadata={"experiment": "qdf_small", "molecules": str(args.molecules)})
    print(f"exported: {model_file} (sha256 {sha[:12]}...)")

    name, atoms, u0 = next(qm9pack_atoms("under14", max_molecules=1))
    atoms.calc = QDFCalculator(model_file)
    energy = atoms.get_potential_energy()
    print(f"{name} {atoms.get_chemical_formula()}: predicted U0 {energy:.3f} eV, QM9 {u0:.3f} eV "
          f"(error {energy - u0:+.3f} eV; a {args.epochs}-epoch model is far from converged)")


if __name__ == "__main__":
    main()
