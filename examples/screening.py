"""Screen QM9-like molecules with the QDF model: total U0 and atomization energies.

    python examples/screening.py [--model PATH] [--n 1000] [--out screening.csv]

Molecules come from QM9 (the ``qm9pack`` package; its reference U0 gives a MAE),
or, if that is not installed, from ASE's g2 set restricted to H/C/N/O/F.
The model is ``--model``, else ``$QDF_MODEL``, else the shipped model.
``QDF_SMOKE=1`` runs a tiny version.
"""

import argparse
import os
import sys
import time

import numpy as np

from ase_qdf import InvalidMoleculeError, predict_energies, validate_atoms
from ase_qdf.predict import resolve_model_or_exit

SMOKE = os.environ.get("QDF_SMOKE") == "1"



def molecules(n):
    try:
        from schnetpack_ext.datasets import qm9pack_atoms

        data = list(qm9pack_atoms("under14", max_molecules=n))
        return [name for name, _, _ in data], [a for _, a, _ in data], np.array([u for _, _, u in data])
    except Exception as err:  # noqa: BLE001 - fall back to ASE's g2 set
        print(f"QM9 not available ({err}); using ASE's g2 molecules", file=sys.stderr)
    from ase.build import molecule
    from ase.collections import g2

    names, mols = [], []
    for name in g2.names:
        atoms = molecule(name)
        try:
            validate_atoms(atoms)
        except InvalidMoleculeError:
            continue
        names.append(name)
        mols.append(atoms)
    return names[:n], mols[:n], None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--n", type=int, default=8 if SMOKE else 1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", help="optional CSV of name, energy_eV, atomization_energy_eV")
    args = parser.parse_args(argv)

    model = resolve_model_or_exit(args.model)
    names, mols, reference = molecules(args.n)
    start = time.perf_counter()
    energies = predict_energies(mols, model=model, batch_size=args.batch_size)
    elapsed = time.perf_counter() - start
    from ase_qdf.predict import QM9_ATOMREFS_EV

    atomization = energies - np.array([QM9_ATOMREFS_EV[a.numbers].sum() for a in mols])
    print(f"{len(mols)} molecules in {elapsed:.2f} s ({len(mols) / elapsed:.1f} mol/s)")
    if reference is not None:
        print(f"MAE vs QM9 U0: {np.abs(energies - reference).mean():.4f} eV")
    per_atom = atomization / np.array([len(a) for a in mols])
    print("most strongly bound per atom:")
    for k in np.argsort(per_atom)[:5]:
        print(f"  {names[k]:20s} {mols[k].get_chemical_formula():10s} {per_atom[k]:8.3f} eV/atom")
    if args.out:
        with open(args.out, "w") as f:
            f.write("name,energy_eV,atomization_energy_eV\n")
            for name, e, ea in zip(names, energies, atomization):
                f.write(f"{name},{e:.6f},{ea:.6f}\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
