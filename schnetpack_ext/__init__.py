"""SchNetPack extensions: the Quantum Deep Field (QDF) model, QM9 data and training helpers.

Modules:
    representation: the :class:`~schnetpack_ext.representation.QDF` representation.
    atomistic: the Hohenberg-Kohn map output module.
    hk_task: the HK auxiliary loss and the QDF training task.
    datasets: QM9 from the ``qm9pack`` package.
    transform: data augmentation (random rotations).
    nn: quadrature grids and orbital sets.
"""

from schnetpack_ext import nn, representation, atomistic, datasets, task, train, hk_task, transform  # noqa: F401
from schnetpack_ext.representation import QDF  # noqa: F401
from schnetpack_ext.atomistic import HKPotential  # noqa: F401
from schnetpack_ext.hk_task import HKPotentialOutput, QDFTask  # noqa: F401

__all__ = ["QDF", "HKPotential", "HKPotentialOutput", "QDFTask"]
