"""RandomRotation: a data-augmentation transform for SchNetPack data modules."""

import pytest
import torch

import schnetpack.properties as properties
from schnetpack_ext.transform import RandomRotation, random_rotation_matrix


def _sample(idx=0, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        properties.Z: torch.tensor([6, 1, 1, 8, 7][:n]),
        properties.R: torch.randn(n, 3, generator=g, dtype=torch.float64),
        "forces": torch.randn(n, 3, generator=g, dtype=torch.float64),
        properties.idx: torch.tensor([idx]),
    }


def test_random_rotation_matrices_are_proper_and_uniform():
    g = torch.Generator().manual_seed(3)
    matrices = torch.stack([random_rotation_matrix(g) for _ in range(4000)])
    eye = torch.eye(3, dtype=torch.float64).expand(4000, 3, 3)
    torch.testing.assert_close(matrices @ matrices.transpose(1, 2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(matrices), torch.ones(4000, dtype=torch.float64))
    # the Haar measure has mean zero for every matrix element (a biased sampler, e.g.
    # normalised Euler angles, does not); 4000 samples: standard error ~0.01
    assert matrices.mean(0).abs().max() < 0.05
    # and E[R_ij^2] = 1/3
    assert (matrices.pow(2).mean(0) - 1 / 3).abs().max() < 0.03


def test_rotation_keeps_distances_and_turns_forces_with_the_positions():
    sample = _sample()
    before = {k: v.clone() for k, v in sample.items()}
    out = RandomRotation()(sample)
    assert (out[properties.R] - before[properties.R]).abs().max() > 1e-3
    torch.testing.assert_close(torch.cdist(out[properties.R], out[properties.R]),
                               torch.cdist(before[properties.R], before[properties.R]))
    # force-position dot products are invariants of a common rotation
    torch.testing.assert_close(out["forces"] @ out[properties.R].T, before["forces"] @ before[properties.R].T)
    torch.testing.assert_close(out[properties.Z], before[properties.Z])


def test_unseeded_rotation_differs_per_call_and_follows_the_global_seed():
    torch.manual_seed(11)
    first = RandomRotation()(_sample())[properties.R]
    second = RandomRotation()(_sample())[properties.R]
    assert (first - second).abs().max() > 1e-3
    torch.manual_seed(11)
    torch.testing.assert_close(RandomRotation()(_sample())[properties.R], first)


def test_seeded_rotation_is_a_function_of_seed_and_index():
    transform = RandomRotation(seed=5)
    a = transform(_sample(idx=7))[properties.R]
    torch.manual_seed(0)  # the global generator plays no part
    torch.testing.assert_close(transform(_sample(idx=7))[properties.R], a)
    assert (transform(_sample(idx=8))[properties.R] - a).abs().max() > 1e-3
    assert (RandomRotation(seed=6)(_sample(idx=7))[properties.R] - a).abs().max() > 1e-3
    sample = _sample()
    del sample[properties.idx]
    with pytest.raises(KeyError, match="_idx"):
        transform(sample)
