"""Data-augmentation transforms for SchNetPack data modules.

QDF integrates its energy functional on atom-centred Lebedev grids whose orientation is
fixed in space, so its energy is rotation invariant only up to the quadrature error.
Trained on QM9 in the orientation the database stores, a model learns to lean on that
orientation: the phase-5 model had a validation MAE of 0.0741 eV as stored and 0.0819 eV
for the same molecules randomly rotated. Random rotations in training remove that
shortcut, so that validation measures what users get for molecules in any orientation;
one training cycle with them (phase 6) brought the rotated validation MAE to 0.0736 eV
(docs/benchmarks/training_qdf_relu_bf16.md).
"""

from typing import Dict, Optional, Sequence

import torch
from scipy.spatial.transform import Rotation

import schnetpack.properties as properties
from schnetpack.transform import Transform

__all__ = ["RandomRotation", "random_rotation_matrix"]


def random_rotation_matrix(generator: Optional[torch.Generator] = None,
                           dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A rotation matrix drawn uniformly from SO(3) (Haar measure).

    A unit quaternion with four independent normal components is uniform on the
    3-sphere, and SciPy's quaternion-to-matrix map carries that to the uniform measure
    on rotations. The normals come from torch, so that Lightning's seeding covers them.

    Args:
        generator: random number generator (``None``: torch's global one).
        dtype: dtype of the matrix.

    Returns:
        A (3, 3) proper rotation matrix (orthogonal, determinant +1).
    """
    quaternion = torch.randn(4, generator=generator, dtype=torch.float64).numpy()
    return torch.as_tensor(Rotation.from_quat(quaternion).as_matrix(), dtype=dtype)


class RandomRotation(Transform):
    """Rotate a structure (positions, vector properties and cell) by a random rotation.

    For training (``seed=None``) every call draws a fresh rotation from torch's global
    generator, which Lightning's ``seed_everything`` seeds, so a run is reproducible.
    With a ``seed`` the rotation is a fixed function of ``(seed, _idx)``: the same
    molecule is always rotated the same way, for a deterministic validation or test set
    in random orientations.

    Place it before the neighbour list; distances, and hence SchNetPack neighbour lists,
    are unchanged by it. Use it as a training transform in a YAML config::

        data:
          train_transforms:
            - _target_: schnetpack.transform.RemoveOffsets
              ...
            - _target_: schnetpack_ext.transform.RandomRotation
            - _target_: schnetpack.transform.MatScipyNeighborList
              cutoff: ${globals.cutoff}
            - _target_: schnetpack.transform.CastTo32

    Args:
        seed: ``None`` for a fresh rotation per call, else the seed of the fixed
            per-molecule rotation.
        vector_properties: keys of per-atom Cartesian vectors (N, 3) rotated with the
            positions when present (forces, dipole-like targets).
    """

    is_preprocessor: bool = True
    is_postprocessor: bool = False

    def __init__(self, seed: Optional[int] = None, vector_properties: Sequence[str] = ("forces",)):
        super().__init__()
        self.seed = None if seed is None else int(seed)
        self.vector_properties = tuple(vector_properties)

    def _rotation(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        if self.seed is None:
            return random_rotation_matrix()
        if properties.idx not in inputs:
            raise KeyError(f"RandomRotation(seed={self.seed}) needs the sample index {properties.idx!r} in the inputs")
        # a generator per molecule: the rotation depends on (seed, index) only, not on
        # the order in which a data loader visits the molecules
        index = int(inputs[properties.idx].reshape(-1)[0])
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return random_rotation_matrix(generator)

    def forward(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        rotation = self._rotation(inputs)
        positions = inputs[properties.R]
        # row vectors: x' = x R^T
        inputs[properties.R] = positions @ rotation.to(positions.dtype).T
        for key in self.vector_properties:
            if key in inputs:
                value = inputs[key]
                inputs[key] = value @ rotation.to(value.dtype).T
        if properties.cell in inputs:
            cell = inputs[properties.cell]
            inputs[properties.cell] = cell @ rotation.to(cell.dtype).T
        return inputs
