"""ASE calculator for the QDF model."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes

from ase_qdf.predict import QDFEngine
from ase_qdf.validation import validate_atoms

__all__ = ["QDFCalculator"]


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
    cached by ASE until the atoms change. Only neutral, closed-shell, non-periodic
    H/C/N/O/F molecules are accepted (:func:`ase_qdf.validation.validate_atoms`).

    Args:
        model: path of an ase-qdf model file, a loaded model, or None for the
            shipped model (``FileNotFoundError`` if it is not shipped yet).
        device: ``"auto"`` (cuda if available), ``"cpu"``, ``"cuda"``, ...
        dtype: ``"float32"`` (fast) or ``"float64"`` (finite-difference checks, MD).
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator`.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "atomization_energy"]

    def __init__(self, model=None, device="auto", dtype="float32", **kwargs):
        self.engine = QDFEngine(model, device=device, dtype=dtype)
        super().__init__(**kwargs)

    @property
    def model(self):
        """The underlying SchNetPack model."""
        return self.engine.model

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
