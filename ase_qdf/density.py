"""Electron density and Hohenberg-Kohn potential of the QDF model for ASE molecules.

The density is the model's own ``rho(r) = sum_k psi_k(r)^2`` (same orbitals,
exponents and basis normalisation as the energy), normalised so that it
integrates to the electron count N_e over all space (electrons/Å^3); see
:mod:`schnetpack_ext.representation.qdf_fields` and ``docs/density.md`` for
why this differs from the model's grid normalisation. Regular grids follow
ASE's cube convention: ``data[i, j, k]`` at ``origin + i*cell[0]/nx + j*cell[1]/ny
+ k*cell[2]/nz``, so ``ase.io.write(path, atoms, format="cube", data=data,
origin=origin)`` with ``atoms.cell = cell`` writes it (:func:`write_cube`).

References:
    .. [#qdf] Tsubaki, Mizoguchi. Quantum deep field: data-driven wave function,
       electron density generation, and atomization energy prediction and
       extrapolation with machine learning. Phys. Rev. Lett. 125, 206401 (2020).
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np
import torch
from schnetpack import properties

from schnetpack_ext.representation.qdf_fields import QDFFields

from ase_qdf.validation import validate_atoms

__all__ = [
    "FIELDS",
    "RegularGrid",
    "density_model",
    "molecule_fields",
    "regular_grid",
    "field_at",
    "field_on_grid",
    "line_profile",
    "write_cube",
]

#: field names: density (e/Å^3), HK-predicted potential, Gaussian external potential
FIELDS = ("density", "hk_potential", "external_potential")


class RegularGrid(NamedTuple):
    """A regular grid in ASE's cube layout.

    Attributes:
        origin: (3,) position of point ``[0, 0, 0]`` (Å).
        cell: (3, 3) cell; the spacing along axis ``a`` is ``cell[a] / shape[a]``.
        shape: ``(nx, ny, nz)``.
    """

    origin: np.ndarray
    cell: np.ndarray
    shape: Tuple[int, int, int]

    def points(self) -> np.ndarray:
        """(nx, ny, nz, 3) coordinates of the grid points (Å)."""
        axes = [np.arange(n) / n for n in self.shape]
        frac = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        return self.origin + frac @ self.cell

    @property
    def voxel_volume(self) -> float:
        """Volume of one grid cell (Å^3)."""
        return float(abs(np.linalg.det(self.cell)) / np.prod(self.shape))


def regular_grid(atoms, spacing: float = 0.2, margin: float = 3.0) -> RegularGrid:
    """Axis-aligned box around the atoms with at most ``spacing`` between points.

    Args:
        atoms: ``ase.Atoms``.
        spacing: largest grid spacing (Å).
        margin: space between the outermost atoms and the box faces (Å).
    """
    if not spacing > 0 or not margin >= 0:
        raise ValueError(f"need spacing > 0 and margin >= 0, got {spacing}, {margin}")
    positions = atoms.get_positions()
    lower = positions.min(0) - margin
    length = positions.max(0) + margin - lower
    shape = tuple(int(n) for n in np.maximum(np.ceil(length / spacing).astype(int) + 1, 2))
    # n points with spacing length/(n-1): the last point lies on the upper face
    step = length / (np.array(shape) - 1)
    return RegularGrid(lower, np.diag(step * np.array(shape)), shape)


def molecule_fields(atoms, model=None, device="cpu", dtype="float64", **kwargs) -> QDFFields:
    """Validated molecule -> :class:`~schnetpack_ext.representation.qdf_fields.QDFFields`.

    Args:
        atoms: ``ase.Atoms`` (checked with :func:`ase_qdf.validation.validate_atoms`).
        model: model file path, loaded model, :class:`~ase_qdf.QDFEngine` or None
            (``$QDF_MODEL``, then the shipped model).
        device: torch device.
        dtype: model dtype; the fields themselves are computed in float64.
        **kwargs: passed to :class:`QDFFields` (normalisation grid size, chunking).

    An average of models (:class:`~ase_qdf.average.QDFAverage`) gives the fields of its
    heaviest member with the molecule-wide normalisation: a density is one model's
    orbitals squared, and the local normalisation defines none between the atoms'
    grid balls (:class:`QDFFields`).

    Raises:
        InvalidMoleculeError: the molecule is outside the model's domain.
        NotImplementedError: the model (every member of an average) uses the local
            normalisation.
    """
    from ase_qdf.model_io import _canonical_parts
    from ase_qdf.predict import resolve_model, warn_about_fragments

    validate_atoms(atoms)
    resolved = density_model(resolve_model(model, device=device, dtype=dtype))
    hk = _canonical_parts(resolved)[2]
    fields = QDFFields(resolved.representation, atoms.numbers, atoms.get_positions(), hk=hk, **kwargs)
    # the same warning as the energy path, on the pairs the fields have already found
    idx_i, idx_j = fields.atom_pairs
    pairs = {properties.Z: fields.numbers, properties.idx_i: idx_i, properties.idx_j: idx_j,
             properties.idx_m: torch.zeros_like(fields.numbers), properties.n_atoms: torch.tensor([len(atoms)])}
    warn_about_fragments(pairs, [atoms], fields.rep.cutoff)
    return fields


def density_model(model):
    """The model whose orbitals give the density: ``model`` itself, or an average's member.

    For a :class:`~ase_qdf.average.QDFAverage`, the QDF member of largest weight among those
    with the molecule-wide normalisation; if none has it, the first QDF member (whose
    :class:`QDFFields` then refuses the local normalisation with its reason).

    Raises:
        ValueError: the model has no QDF member (PaiNN has no orbitals, hence no density).
    """
    from ase_qdf.average import QDFAverage, qdf_members

    members = qdf_members(model)
    if not members:
        raise ValueError("the model has no QDF member and hence no electron density (PaiNN has no orbitals); "
                         "use a QDF model, e.g. the default qdf_qm9")
    if not isinstance(model, QDFAverage):
        return model
    molecule_wide = [(w, m) for w, m in members if m.representation.normalisation == "molecule"]
    return max(molecule_wide or members[:1], key=lambda pair: pair[0])[1]


def field_at(fields: QDFFields, points, kind: str = "density") -> np.ndarray:
    """One field at arbitrary points.

    Args:
        fields: from :func:`molecule_fields`.
        points: (..., 3) points (Å).
        kind: ``"density"`` (e/Å^3), ``"hk_potential"`` or ``"external_potential"``.
    """
    if kind == "density":
        return fields.density(points)
    if kind == "external_potential":
        return fields.external_potential(points)
    if kind == "hk_potential":
        return fields.hk_potential(points)
    raise ValueError(f"kind must be one of {FIELDS}, got {kind!r}")


def field_on_grid(fields: QDFFields, grid: RegularGrid, kind: str = "density") -> np.ndarray:
    """A field on a :class:`RegularGrid`, shape ``grid.shape`` (cube layout).

    Args:
        fields: from :func:`molecule_fields`.
        grid: from :func:`regular_grid`.
        kind: see :func:`field_at`.
    """
    return field_at(fields, grid.points(), kind)


def line_profile(fields: QDFFields, start, end, n_points: int = 200, extend: float = 1.0,
                 kind: str = "density"):
    """A field along the straight line from ``start`` to ``end``.

    Args:
        fields: from :func:`molecule_fields`.
        start, end: (3,) end points (Å), e.g. two atom positions.
        n_points: number of samples.
        extend: the line continues this far (Å) beyond both ends.
        kind: see :func:`field_at`.

    Returns:
        ``s`` (n,) signed distance from ``start`` (Å), ``points`` (n, 3), ``values`` (n,).
    """
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    length = float(np.linalg.norm(end - start))
    if length == 0:
        raise ValueError("start and end coincide")
    unit = (end - start) / length
    s = np.linspace(-extend, length + extend, int(n_points))
    points = start + s[:, None] * unit
    return s, points, field_at(fields, points, kind)


def write_cube(path, atoms, data: np.ndarray, grid: RegularGrid, comment: str = None) -> None:
    """Write a field on ``grid`` as a Gaussian cube file via ``ase.io.write``.

    Args:
        path: output file.
        atoms: the molecule (not modified).
        data: array of shape ``grid.shape``.
        grid: the grid of ``data``.
        comment: first line of the file.
    """
    from ase.io import write

    data = np.asarray(data)
    if data.shape != tuple(grid.shape):
        raise ValueError(f"data shape {data.shape} does not match the grid {tuple(grid.shape)}")
    boxed = atoms.copy()
    boxed.calc = None
    boxed.set_cell(grid.cell)
    boxed.pbc = False
    write(path, boxed, format="cube", data=data, origin=grid.origin, comment=comment)
