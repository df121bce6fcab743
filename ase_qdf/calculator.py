"""ASE calculator for the QDF model."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes

from ase_qdf.predict import QDFEngine
from ase_qdf.validation import validate_atoms

__all__ = ["QDFCalculator"]

#: ``atoms.info`` keys that :func:`validate_atoms` reads (a change invalidates the cache)
_INFO_KEYS = ("charge", "spin", "multiplicity")


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays and other odd values count as changed
        return False


class QDFCalculator(Calculator):
    """ASE calculator for the Quantum Deep Field model trained on QM9 U0.

    Units: energies in eV, positions in Å, forces in eV/Å.

    Properties:
        ``energy`` / ``free_energy``: predicted total U0 of the molecule (0 K
        internal energy, eV) = atomization energy + Σ QM9 U0 atomrefs of its atoms
        (H −0.500273, C −37.846772, N −54.583861, O −75.064579, F −99.718730 Ha).
        ``atomization_energy``: ``energy`` − Σ QM9 atomrefs (negative for bound molecules).
        ``energies``: per-atom energies (network output of the atom + mean per atom
        + atomref of its element), summing to ``energy``.
        ``forces``: −dE/dR (eV/Å), computed only when asked for.

    Energy, per-atom energies and atomization energy come from one forward pass;
    forces need a backward pass and are computed only when requested. Results are
    cached by ASE until the atoms change. The model's electron density and
    Hohenberg-Kohn potential on a regular grid come from
    :meth:`get_pseudo_density`, :meth:`get_hk_potential` and :meth:`get_density_grid`
    (see :mod:`ase_qdf.density`). Only neutral, closed-shell, non-periodic
    H/C/N/O/F molecules are accepted (:func:`ase_qdf.validation.validate_atoms`).

    Args:
        model: path of an ase-qdf model file, the name of a shipped model
            (``"qdf_qm9"``, the default, or ``"qdf_qm9_average"``, more accurate at
            twice the cost: ``docs/model_card.md``), a loaded model, or None for the
            default shipped model.
        device: ``"auto"`` (cuda if available), ``"cpu"``, ``"cuda"``, ...
        dtype: ``"float32"`` (fast) or ``"float64"`` (finite-difference checks, MD).
        precision: arithmetic of the energy functional: None (as the model file
            says), ``"full"`` or ``"bf16"`` (faster, slightly less accurate; see
            :class:`ase_qdf.predict.QDFEngine`).
        lebedev_order: evaluate on another Lebedev grid than the model file's own
            (None). The shipped file uses order 17 (its weights were trained on 11):
            ``lebedev_order=11`` is about 2× faster but makes the energy about 3×
            more orientation dependent (``docs/model_card.md``).
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator`.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "atomization_energy"]

    def __init__(self, model=None, device="auto", dtype="float32", precision=None, lebedev_order=None, **kwargs):
        self.engine = QDFEngine(model, device=device, dtype=dtype, precision=precision,
                                lebedev_order=lebedev_order)
        super().__init__(**kwargs)

    @property
    def model(self):
        """The underlying SchNetPack model."""
        return self.engine.model

    def check_state(self, atoms, tol=1e-15):
        """ASE's check, plus the ``atoms.info`` keys that validation reads.

        ASE compares positions, numbers, cell, pbc, charges and magnetic moments
        only, so setting ``atoms.info["charge"] = 1`` after a calculation would
        return the cached neutral energy instead of the refusal.
        """
        changes = super().check_state(atoms, tol=tol)
        if self.atoms is not None and "info" not in changes:
            if any(not _same(self.atoms.info.get(k), atoms.info.get(k)) for k in _INFO_KEYS):
                changes = list(changes) + ["info"]
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        validate_atoms(self.atoms)
        want_forces = "forces" in properties
        result = self.engine.evaluate([self.atoms], forces=want_forces)[0]
        self.results["energy"] = result["energy"]
        self.results["free_energy"] = result["energy"]
        self.results["atomization_energy"] = result["atomization_energy"]
        self.results["energies"] = result["energies"]
        if want_forces:
            self.results["forces"] = result["forces"]

    # ------------------------------------------------------------ density output

    def _fields(self, atoms=None):
        """Cached :class:`~schnetpack_ext.representation.qdf_fields.QDFFields` of the molecule."""
        from ase_qdf.density import molecule_fields

        atoms = atoms if atoms is not None else self.atoms
        if atoms is None:
            raise ValueError("no atoms: pass atoms, or run a calculation first (atoms.get_potential_energy())")
        validate_atoms(atoms)
        key = (atoms.numbers.tobytes(), atoms.get_positions().tobytes())
        cached = getattr(self, "_fields_cache", None)
        if cached is None or cached[0] != key:
            fields = molecule_fields(atoms, model=self.engine.model, device=self.engine.device,
                                     dtype=self.engine.dtype)
            self._fields_cache = cached = (key, fields)
        return cached[1]

    def get_density_grid(self, atoms=None, spacing=0.2, margin=3.0):
        """Regular grid of :meth:`get_pseudo_density`: ``(origin, cell, shape)``.

        Args:
            atoms: the molecule (default: the calculator's atoms).
            spacing: largest grid spacing (Å).
            margin: distance from the outermost atoms to the box faces (Å).

        Returns:
            :class:`ase_qdf.density.RegularGrid`; point ``[i, j, k]`` lies at
            ``origin + i*cell[0]/nx + j*cell[1]/ny + k*cell[2]/nz`` (Å).
        """
        from ase_qdf.density import regular_grid

        atoms = atoms if atoms is not None else self.atoms
        if atoms is None:
            raise ValueError("no atoms: pass atoms, or run a calculation first (atoms.get_potential_energy())")
        validate_atoms(atoms)
        return regular_grid(atoms, spacing, margin)

    def get_pseudo_density(self, atoms=None, spacing=0.2, margin=3.0):
        """The model's electron density (electrons/Å^3) on a regular grid.

        Normalised to the electron count over all space. Layout as in ASE's cube
        writer: ``ase.io.write("rho.cube", atoms_with_cell, data=rho, origin=origin)``
        with the grid of :meth:`get_density_grid` (or :func:`ase_qdf.density.write_cube`).

        Args:
            atoms: the molecule (default: the calculator's atoms).
            spacing: largest grid spacing (Å).
            margin: distance from the outermost atoms to the box faces (Å).

        Returns:
            array of shape ``get_density_grid(...).shape``.
        """
        from ase_qdf.density import field_on_grid

        grid = self.get_density_grid(atoms, spacing, margin)
        return field_on_grid(self._fields(atoms), grid, "density")

    def get_hk_potential(self, atoms=None, spacing=0.2, margin=3.0):
        """The model's Hohenberg-Kohn potential V_hat(r) on the grid of :meth:`get_density_grid`.

        The HK map of the model applied to its density (in the model's own grid
        normalisation, the input the map was trained on); its target is the
        Gaussian external potential ``-sum_A Z_A exp(-|r - R_A|^2)``.

        Args:
            atoms: the molecule (default: the calculator's atoms).
            spacing: largest grid spacing (Å).
            margin: distance from the outermost atoms to the box faces (Å).
        """
        from ase_qdf.density import field_on_grid

        grid = self.get_density_grid(atoms, spacing, margin)
        return field_on_grid(self._fields(atoms), grid, "hk_potential")
