"""Electron density of the QDF model: a Gaussian cube file and a bond profile.

    python examples/density_cube.py [--model PATH] [--molecule C2H5OH] [--out density.cube]

Writes the model's electron density (electrons/Å^3, integrating to the electron
count) of a molecule from ASE's g2 set as a cube file (open it in VESTA, VMD,
Avogadro, ...) and, with ``--potential-out``, the Hohenberg-Kohn potential;
prints the integral of the density on the grid and the density along the
line through the first two atoms. The model is ``--model``, else
``$QDF_MODEL``, else the shipped model. ``QDF_SMOKE=1`` runs a coarse grid.
"""

import argparse
import os

import numpy as np
from ase.build import molecule

from ase_qdf import density
from ase_qdf.predict import resolve_model_or_exit

SMOKE = os.environ.get("QDF_SMOKE") == "1"



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--molecule", default="CH3CH2OH", help="a g2 molecule name")
    parser.add_argument("--spacing", type=float, default=0.4 if SMOKE else 0.15)
    parser.add_argument("--margin", type=float, default=3.0 if SMOKE else 4.0)
    parser.add_argument("--out", default="density.cube")
    parser.add_argument("--potential-out", help="optional cube file of the HK potential")
    args = parser.parse_args(argv)

    model = resolve_model_or_exit(args.model, device="cpu", dtype="float64")
    atoms = molecule(args.molecule)
    fields = density.molecule_fields(atoms, model=model)
    grid = density.regular_grid(atoms, args.spacing, args.margin)
    rho = density.field_on_grid(fields, grid)
    density.write_cube(args.out, atoms, rho, grid, comment=f"QDF electron density of {args.molecule}")
    n_e = atoms.numbers.sum()
    print(f"{args.molecule}: grid {grid.shape}, spacing <= {args.spacing} Å, wrote {args.out}")
    print(f"integral of rho on the grid: {rho.sum() * grid.voxel_volume:.3f} e (N_e = {n_e}); "
          f"max {rho.max():.3f} e/Å^3, min {rho.min():.2e}")
    if args.potential_out:
        v = density.field_on_grid(fields, grid, "hk_potential")
        density.write_cube(args.potential_out, atoms, v, grid, comment=f"QDF HK potential of {args.molecule}")
        print(f"wrote {args.potential_out} (HK potential, min {v.min():.3f})")
    s, _, profile = density.line_profile(fields, atoms.positions[0], atoms.positions[1], n_points=11, extend=0.5)
    print(f"density along {atoms[0].symbol}0 -> {atoms[1].symbol}1 (Å, e/Å^3):")
    for sk, v in zip(s, profile):
        print(f"  {sk:6.2f} {v:8.4f} " + "#" * int(40 * v / max(profile.max(), 1e-12)))
    return np.asarray(rho)


if __name__ == "__main__":
    main()
