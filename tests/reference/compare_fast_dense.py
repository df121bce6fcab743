"""Print the max relative difference between the fast QDF path and the dense reference.

Paper-size model (D = 250), paper grid, float64, small g2 and QM9 molecules::

    python -m tests.reference.compare_fast_dense
"""
import numpy as np, torch, schnetpack as spk
from ase.build import molecule
from schnetpack_ext.representation import QDF
from tests.reference.qdf_dense import qdf_dense
from schnetpack_ext.datasets import qm9pack_atoms
mols = [molecule(n) for n in ["H2O", "HCN", "CH3COF", "CH3CH2OH"]] + [a for _, a, _ in qm9pack_atoms("under14", 30)][-3:]
worst = 0
for atoms in mols:
    torch.manual_seed(3)
    rep = QDF(n_atom_basis=250, grid="paper", activation="relu", basis_cutoff=40.0, zeta_min=0.0)
    with torch.no_grad(): rep.zeta_raw.add_(0.3 * torch.randn_like(rep.zeta_raw))
    rep = rep.double()
    conv = spk.interfaces.AtomsConverter(neighbor_list=spk.transform.ASENeighborList(cutoff=rep.cutoff), dtype=torch.float64)
    out = rep(spk.atomistic.PairwiseDistances()(conv(atoms)))
    layers = [(l.weight.detach().numpy(), l.bias.detach().numpy()) for l in rep.functional]
    f, rho, v, _ = qdf_dense(atoms.numbers, atoms.positions, rep.zeta.detach().numpy(), rep.coefficients.detach().numpy(), layers)
    rel = np.abs(out["scalar_representation"].detach().numpy() - f).max() / np.abs(f).max()
    rel_rho = np.abs(out["density"].detach().numpy() - rho).max() / np.abs(rho).max()
    worst = max(worst, rel)
    print(atoms.get_chemical_formula(), len(atoms), "features %.2e density %.2e" % (rel, rel_rho))
print("max relative difference", worst)
