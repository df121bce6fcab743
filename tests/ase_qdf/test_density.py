"""Density / HK potential output: normalisation, positivity, rotation, dense reference, CLI."""

import csv

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.io import read
from ase.io.cube import read_cube_data
from scipy.spatial.transform import Rotation

from ase_qdf import InvalidMoleculeError, QDFCalculator, cli, density
from ase_qdf.model_io import _canonical_parts
from schnetpack_ext.nn.molecular_grid import molecular_grid
from tests.reference.qdf_dense import qdf_dense_density

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def methanol():
    return molecule("CH3OH")


@pytest.fixture(scope="module")
def fields(model64, methanol):
    return density.molecule_fields(methanol, model=model64)


def _random_points(atoms, n=300, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = atoms.positions.min(0) - 2.0, atoms.positions.max(0) + 2.0
    return rng.uniform(lo, hi, size=(n, 3))


def test_density_integrates_to_electron_count(fields, methanol):
    grid = density.regular_grid(methanol, spacing=0.15, margin=4.5)
    rho = density.field_on_grid(fields, grid)
    assert rho.shape == grid.shape
    assert rho.min() >= 0.0
    n_e = methanol.numbers.sum()
    assert rho.sum() * grid.voxel_volume == pytest.approx(n_e, rel=0.02)


@pytest.mark.parametrize("normalisation", ["full", "model"])
def test_density_matches_dense_reference(model64, methanol, normalisation):
    rep = model64.representation
    norm_grid = molecular_grid(methanol.positions, 16, 11)
    fields = density.molecule_fields(methanol, model=model64, normalisation_grid=norm_grid)
    points = _random_points(methanol)
    points[:5] = methanol.positions[:5] + 1e-3  # close to nuclei
    fast = fields.density(points, normalisation=normalisation)
    extra = {} if normalisation == "model" else dict(norm_points=norm_grid[0], norm_weights=norm_grid[1])
    dense = qdf_dense_density(
        methanol.numbers, methanol.positions, rep.zeta.detach().double().numpy(),
        rep.coefficients.detach().double().numpy(), points, rep.grid_offsets.double().numpy(),
        rep.grid_weights.double().numpy(), rep.basis_cutoff, rep.switch_width, **extra,
    )
    np.testing.assert_allclose(fast, dense, rtol=1e-9, atol=1e-12)


def test_rotation_covariance(model64, methanol, fields):
    rot = Rotation.from_euler("zyx", [0.7, -1.1, 2.3]).as_matrix()
    rotated = methanol.copy()
    centre = methanol.get_center_of_mass()
    rotated.positions = (methanol.positions - centre) @ rot.T + centre
    rot_fields = density.molecule_fields(rotated, model=model64)
    points = _random_points(methanol, seed=1)
    rho = fields.density(points)
    rho_rot = rot_fields.density((points - centre) @ rot.T + centre)
    np.testing.assert_allclose(rho_rot, rho, rtol=2e-3, atol=1e-6 * rho.max())
    v = fields.external_potential(points)
    np.testing.assert_allclose(rot_fields.external_potential((points - centre) @ rot.T + centre), v, atol=1e-12)


def test_fields_match_the_model_forward_pass(model64, methanol, fields):
    """Model-normalised density and HK potential on the model grid = the forward pass."""
    from ase_qdf.predict import QDFEngine
    from schnetpack_ext.representation.qdf import density_key, external_potential_key

    engine = QDFEngine(model64, device="cpu", dtype="float64")
    inputs = engine.converter([methanol])
    for m in engine.model.input_modules:
        inputs = m(inputs)
    rep, _, hk, _ = _canonical_parts(engine.model)
    with torch.no_grad():
        inputs = hk(rep(inputs, compute_hk_fields=True))
    grid_points = (methanol.positions[:, None, :] + rep.grid_offsets.double().numpy()[None]).reshape(-1, 3)
    np.testing.assert_allclose(fields.density(grid_points, "model"), inputs[density_key].numpy(), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(fields.external_potential(grid_points), inputs[external_potential_key].numpy(), atol=1e-10)
    np.testing.assert_allclose(fields.hk_potential(grid_points), inputs[hk.output_key].numpy(), rtol=1e-6, atol=1e-9)


def test_external_potential_formula(fields, methanol):
    points = _random_points(methanol, n=50)
    d2 = ((points[:, None] - methanol.positions[None]) ** 2).sum(-1)
    expected = -(methanol.numbers[None] * np.exp(-d2)).sum(1)
    np.testing.assert_allclose(fields.external_potential(points), expected, atol=1e-12)


def test_calculator_grid_and_cube_roundtrip(model_path, methanol, tmp_path):
    atoms = methanol.copy()
    atoms.calc = QDFCalculator(model_path, device="cpu", dtype="float64")
    with pytest.raises(ValueError, match="no atoms"):
        atoms.calc.get_density_grid()
    assert atoms.calc.get_density_grid(methanol, spacing=0.25, margin=2.0).shape
    atoms.get_potential_energy()  # ASE convention: grids of the last calculated atoms
    grid = atoms.calc.get_density_grid(spacing=0.25, margin=2.0)
    rho = atoms.calc.get_pseudo_density(spacing=0.25, margin=2.0)
    v_hk = atoms.calc.get_hk_potential(spacing=0.25, margin=2.0)
    assert rho.shape == v_hk.shape == grid.shape
    assert np.isfinite(v_hk).all()
    np.testing.assert_allclose(grid.cell, np.diag(np.diag(grid.cell)))
    assert np.all(np.diag(grid.cell) / grid.shape <= 0.25 + 1e-12)
    pts = grid.points()
    np.testing.assert_allclose(pts[0, 0, 0], grid.origin)
    np.testing.assert_allclose(pts[-1, -1, -1], methanol.positions.max(0) + 2.0)

    out = tmp_path / "rho.cube"
    assert cli.main(["density", _xyz(tmp_path, [methanol]), "-o", str(out), "--spacing", "0.25",
                     "--margin", "2.0", "--model", str(model_path)]) == 0
    back = read(out)
    assert list(back.numbers) == list(methanol.numbers)
    np.testing.assert_allclose(back.positions, methanol.positions, atol=1e-5)
    data, _ = read_cube_data(str(out))
    np.testing.assert_allclose(data, rho, rtol=1e-5, atol=1e-10)

    out_v = tmp_path / "v.cube"
    assert cli.main(["density", _xyz(tmp_path, [methanol]), "-o", str(out_v), "--spacing", "0.25",
                     "--margin", "2.0", "--potential", "--model", str(model_path)]) == 0
    np.testing.assert_allclose(read_cube_data(str(out_v))[0], v_hk, rtol=1e-5, atol=1e-8)


def _xyz(tmp_path, frames):
    path = tmp_path / "in.xyz"
    from ase.io import write

    write(path, frames)
    return str(path)


def test_cli_line_profile(model_path, model64, tmp_path):
    ethane = molecule("C2H6")
    png = tmp_path / "line.png"
    argv = ["density", _xyz(tmp_path, [molecule("H2O"), ethane]), "--index", "1", "--line", "0", "1",
            "-o", str(png), "--n-points", "50", "--model", str(model_path)]
    assert cli.main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "line.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["s_angstrom", "x", "y", "z", "density"]
    values = np.array(rows[1:], dtype=float)
    assert len(values) == 50
    bond = np.linalg.norm(ethane.positions[1] - ethane.positions[0])
    assert values[0, 0] == pytest.approx(-1.0) and values[-1, 0] == pytest.approx(bond + 1.0)
    expected = density.molecule_fields(ethane, model=model64).density(values[:, 1:4])
    np.testing.assert_allclose(values[:, 4], expected, rtol=1e-6, atol=1e-10)


def test_bad_input(model_path, model64, tmp_path, capsys):
    silane = molecule("SiH4")
    with pytest.raises(InvalidMoleculeError, match="Si"):
        density.molecule_fields(silane, model=model64)
    atoms = silane.copy()
    atoms.calc = QDFCalculator(model_path, device="cpu")
    with pytest.raises(InvalidMoleculeError):
        atoms.calc.get_pseudo_density(atoms)
    radical = Atoms("CH3", positions=[[0, 0, 0], [1.08, 0, 0], [-0.54, 0.94, 0], [-0.54, -0.94, 0]])
    assert cli.main(["density", _xyz(tmp_path, [radical]), "-o", str(tmp_path / "x.cube"),
                     "--model", str(model_path)]) == 2
    assert "odd electron" in capsys.readouterr().err
    path = _xyz(tmp_path, [molecule("H2O")])
    assert cli.main(["density", path, "--line", "0", "7", "-o", str(tmp_path / "x.png"),
                     "--model", str(model_path)]) == 2
    assert cli.main(["density", path, "--index", "3", "-o", str(tmp_path / "x.cube"),
                     "--model", str(model_path)]) == 1
    assert cli.main(["density", path, "--spacing", "0", "-o", str(tmp_path / "x.cube"),
                     "--model", str(model_path)]) == 2
    assert not (tmp_path / "x.cube").exists()


def test_fragments_warn_and_local_models_are_refused(model64, methanol, tmp_path):
    import warnings

    from tests.ase_qdf.conftest import tiny_model

    far = methanol.copy()
    far.translate([20.0, 0.0, 0.0])
    pair = molecule("H2O") + far  # two molecules 20 A apart, one Atoms: coupled by the normalisation
    with pytest.warns(UserWarning, match=r"CH6O2 \(2 fragments\).*compute each molecule on its own"):
        density.molecule_fields(pair, model=model64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        density.molecule_fields(methanol, model=model64)  # one molecule: no warning
    # the local normalisation has no orbital scale between the atoms' grid balls
    local = tiny_model(normalisation="local")
    with pytest.raises(NotImplementedError, match="normalisation='local'"):
        density.molecule_fields(methanol, model=local)
    from ase_qdf.model_io import save_qdf_model

    save_qdf_model(local, tmp_path / "local.pt")
    assert cli.main(["density", _xyz(tmp_path, [methanol]), "-o", str(tmp_path / "x.cube"),
                     "--model", str(tmp_path / "local.pt")]) == 2
    assert not (tmp_path / "x.cube").exists()
