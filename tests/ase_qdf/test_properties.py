"""Property-based tests: random valid H/C/N/O/F molecules never break the model."""

import numpy as np
from ase import Atoms
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from ase_qdf.predict import predict

ELEMENTS = ["H", "C", "N", "O", "F"]


@st.composite
def molecules(draw):
    n = draw(st.integers(min_value=2, max_value=12))
    symbols = draw(st.lists(st.sampled_from(ELEMENTS), min_size=n, max_size=n))
    coords = draw(st.lists(st.floats(min_value=-3.0, max_value=3.0, allow_nan=False), min_size=3 * n, max_size=3 * n))
    atoms = Atoms(symbols, positions=np.array(coords).reshape(n, 3))
    distances = atoms.get_all_distances() + np.eye(n) * 10
    assume(distances.min() > 0.9)  # physical, and above the validation limit
    assume(atoms.numbers.sum() % 2 == 0)  # closed shell, neutral
    return atoms


def _energy_forces(model, atoms):
    result = predict([atoms], model=model, forces=True, dtype="float64")[0]
    return result["energy"], np.asarray(result["forces"])


# derandomize: CI must see the same examples on every run; the molecules are still random
# (drawn from a fixed seed), and a local `--hypothesis-seed` run can explore more.
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


@SETTINGS
@given(atoms=molecules(), seed=st.integers(0, 2**16))
def test_random_molecules_give_finite_invariant_energies_and_zero_net_force(model64, atoms, seed):
    energy, forces = _energy_forces(model64, atoms)
    assert np.isfinite(energy) and np.isfinite(forces).all()
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-9 * max(1.0, np.abs(forces).max()) * len(atoms))

    rng = np.random.default_rng(seed)
    moved = atoms.copy()
    moved.positions = atoms.positions @ Rotation.random(random_state=seed).as_matrix().T + rng.normal(size=3) * 5
    permutation = rng.permutation(len(atoms))
    moved = moved[permutation]
    energy_moved, forces_moved = _energy_forces(model64, moved)
    # documented tolerance: the Lebedev quadrature error. It is relative to the size of the
    # energy (a random molecule of 12 heavy atoms reaches ~4000 eV, where a CI run measured a
    # 1.2e-4 eV difference); a grid that is not invariant (the paper's) misses by ~1e-2 eV.
    np.testing.assert_allclose(energy_moved, energy, rtol=1e-7, atol=1e-4)
