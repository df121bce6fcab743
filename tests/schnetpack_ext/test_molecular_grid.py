"""The Becke molecular grid integrates over all space and is a partition of unity."""

import numpy as np
import pytest
from ase.build import molecule

from schnetpack_ext.nn.molecular_grid import becke_partition, becke_radial_rule, molecular_grid


def test_radial_rule_integrates_gaussians():
    r, w = becke_radial_rule(40)
    for zeta in (0.5, 1.0, 4.0):
        assert w @ np.exp(-zeta * r**2) == pytest.approx(np.sqrt(np.pi) / (4 * zeta**1.5), rel=1e-6)


def test_partition_of_unity():
    positions = molecule("CH3OH").positions
    points = np.random.default_rng(0).normal(size=(200, 3)) * 1.5
    total = sum(becke_partition(points, positions, np.full(len(points), a)) for a in range(len(positions)))
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_molecular_grid_integrates_atom_centred_gaussians():
    positions = molecule("C2H6").positions
    points, weights = molecular_grid(positions, 30, 17)
    for zeta in (0.5, 1.0, 5.0):
        f = sum(np.exp(-zeta * ((points - r) ** 2).sum(1)) for r in positions)
        assert weights @ f == pytest.approx(len(positions) * (np.pi / zeta) ** 1.5, rel=1e-3)
