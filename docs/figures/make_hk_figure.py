"""Draw docs/figures/hk_potential.png: the HK target potential and the HK map.

    python docs/figures/make_hk_figure.py

(a) the Gaussian external potential V(r) = -sum_A Z_A exp(-|r - R_A|^2) of a water
molecule in its plane, with the atom-centred grid points of the default QDF grid
(2 Gauss-Legendre shells x Lebedev order 11, radius 0.75 Å) projected onto the
plane; (b) V along the O-H bond with the per-atom terms; (c) the HK map as a
diagram. Needs matplotlib, numpy and schnetpack_ext.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from ase.build import molecule  # noqa: E402

from schnetpack_ext.nn.grids import lebedev_grid  # noqa: E402

OUT = Path(__file__).with_name("hk_potential.png")


def potential(points, numbers, positions):
    """V(r) = -sum_A Z_A exp(-|r - R_A|^2) (Å), at points (..., 3)."""
    d2 = ((points[..., None, :] - positions) ** 2).sum(-1)
    return -(numbers * np.exp(-d2)).sum(-1)


def main():
    atoms = molecule("H2O")
    atoms.rotate(atoms.positions[1] - atoms.positions[0], "x", center=atoms.positions[0])
    atoms.translate(-atoms.positions[0])
    # put the molecule in the xy plane
    normal = np.cross(atoms.positions[1], atoms.positions[2])
    atoms.rotate(normal, "z")
    pos, z = atoms.positions, atoms.numbers.astype(float)
    offsets, _ = lebedev_grid(radius=0.75, n_radial=2, lebedev_order=11)
    offsets = offsets.numpy()

    fig, (ax_map, ax_line, ax_hk) = plt.subplots(1, 3, figsize=(13, 4.0), dpi=90,
                                                 gridspec_kw={"width_ratios": [1.1, 1.1, 1.0]})
    # (a) V in the molecular plane and the grid points
    x = np.linspace(-2.0, 2.5, 181)
    y = np.linspace(-1.6, 2.4, 161)
    grid = np.stack([*np.meshgrid(x, y, indexing="xy"), np.zeros((len(y), len(x)))], -1)
    v = potential(grid, z, pos)
    im = ax_map.contourf(x, y, v, levels=20, cmap="viridis")
    fig.colorbar(im, ax=ax_map, label="V(r)  (arb. units)")
    for r_a in pos:
        pts = r_a + offsets
        ax_map.scatter(pts[:, 0], pts[:, 1], s=3, c="white", alpha=0.6, lw=0)
    ax_map.scatter(pos[:, 0], pos[:, 1], s=60, c=["red", "lightgrey", "lightgrey"], edgecolors="k")
    for sym, r_a in zip(atoms.get_chemical_symbols(), pos):
        ax_map.annotate(sym, r_a[:2], xytext=(6, 6), textcoords="offset points", color="white")
    ax_map.set_aspect("equal")
    ax_map.set_xlabel("x (Å)")
    ax_map.set_ylabel("y (Å)")
    ax_map.set_title("(a) V(r) of H$_2$O and the grid points")

    # (b) V along the O-H bond
    t = np.linspace(-1.5, 2.5, 400)
    u = pos[1] / np.linalg.norm(pos[1])
    line = t[:, None] * u
    ax_line.plot(t, potential(line, z, pos), "k", label="V(r)")
    for k, sym in enumerate(atoms.get_chemical_symbols()[:2]):
        ax_line.plot(t, potential(line, z[k:k + 1], pos[k:k + 1]), "--", label=f"{sym} term")
    bond = np.linalg.norm(pos[1])
    for centre in (0.0, bond):
        ax_line.axvspan(centre - 0.75, centre + 0.75, color="C2", alpha=0.08)
    ax_line.set_xlabel("position along the O–H bond (Å)")
    ax_line.set_ylabel("V(r)")
    ax_line.set_title("(b) along the O–H bond; shaded: grid balls")
    ax_line.legend(loc="lower right", fontsize=8)

    # (c) the HK map as a diagram
    ax_hk.set_axis_off()
    ax_hk.set_xlim(0, 1)
    ax_hk.set_ylim(0, 1)
    boxes = [
        (0.5, 0.9, "orbitals $\\psi_k(r)$ on the grid"),
        (0.5, 0.68, "density $\\rho(r) = \\sum_k \\psi_k(r)^2$"),
        (0.5, 0.46, "HK map: MLP $\\rho(r) \\mapsto \\hat V(r)$"),
        (0.5, 0.14, "target $V(r) = -\\sum_A Z_A e^{-|r - R_A|^2}$\n(from the geometry, no data)"),
    ]
    for bx, by, text in boxes:
        ax_hk.text(bx, by, text, ha="center", va="center", fontsize=9,
                   bbox={"boxstyle": "round", "fc": "white", "ec": "0.4"})
    for y0, y1 in ((0.85, 0.73), (0.63, 0.51)):
        ax_hk.annotate("", (0.5, y1), (0.5, y0), arrowprops={"arrowstyle": "->"})
    ax_hk.annotate("", (0.5, 0.24), (0.5, 0.41), arrowprops={"arrowstyle": "<->", "color": "C3"})
    ax_hk.text(0.53, 0.325, "loss: weighted MSE\nover grid points", color="C3", fontsize=8, va="center")
    ax_hk.set_title("(c) the Hohenberg–Kohn auxiliary task")
    fig.tight_layout()
    fig.savefig(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
