"""Shared fixtures: a tiny random-weight QDF model file (default Lebedev grid)."""

import pytest
import torch

from ase_qdf.model_io import build_qdf_model, default_config, load_qdf_model, save_qdf_model

TINY_REP = {"n_atom_basis": 16, "n_functional_layers": 2}
TINY_HK = {"n_hidden": 8, "n_layers": 1}


def tiny_model(seed: int = 0, mean: float = -0.25, **representation):
    """A random-weight QDF model with QM9 atomrefs and a non-zero mean per atom.

    Args:
        representation: settings of the representation other than ``TINY_REP``'s.
    """
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_qdf_model(default_config({**TINY_REP, **representation}, TINY_HK))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    finally:
        torch.random.set_rng_state(gen_state)
    model.postprocessors[1].mean.fill_(mean)
    return model


def assert_forces_match_finite_differences(atoms, components, step=1e-4, tolerance=1e-5):
    """The calculator's forces on ``atoms`` against central differences of its energy.

    Args:
        atoms: an ``Atoms`` with a calculator attached (float64, for the differences to resolve).
        components: ``(atom, axis)`` pairs to check.
    """
    forces = atoms.get_forces()
    for atom, axis in components:
        energies = []
        for sign in (1, -1):
            shifted = atoms.copy()
            shifted.positions[atom, axis] += sign * step
            shifted.calc = atoms.calc
            energies.append(shifted.get_potential_energy())
        assert forces[atom, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * step), abs=tolerance)


def changed_copy(source, change, path):
    """A copy of the model file ``source`` at ``path`` with ``change(payload)`` applied."""
    payload = torch.load(source, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """Path of a small random-weight ase-qdf model file."""
    path = tmp_path_factory.mktemp("qdf_model") / "tiny.pt"
    save_qdf_model(tiny_model(), path, metadata={"purpose": "tests", "random_weights": True})
    return path


@pytest.fixture(scope="session")
def model64(model_path):
    """The tiny model loaded in float64 on the CPU."""
    return load_qdf_model(model_path, dtype="float64")


@pytest.fixture(scope="session")
def model32(model_path):
    """The tiny model loaded in float32 on the CPU."""
    return load_qdf_model(model_path, dtype="float32")
