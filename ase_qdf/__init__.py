"""ase-qdf: the Quantum Deep Field model for ASE.

Main entry points:
    :class:`QDFCalculator` (ASE calculator), :func:`predict_energies` / :func:`predict`
    (batch prediction), :func:`validate_atoms`, :func:`from_pymatgen`, and the model
    file functions :func:`save_qdf_model`, :func:`load_qdf_model`, :func:`export_spk_model`.
"""

from ase_qdf.calculator import QDFCalculator
from ase_qdf.convert import from_pymatgen
from ase_qdf.model_io import (
    ModelFileError,
    UntrustedPickleError,
    build_qdf_model,
    default_config,
    default_model_path,
    export_spk_model,
    load_qdf_model,
    save_qdf_model,
)
from ase_qdf.predict import QDFEngine, predict, predict_energies
from ase_qdf.validation import InvalidMoleculeError, validate_atoms

__all__ = [
    "InvalidMoleculeError",
    "ModelFileError",
    "QDFCalculator",
    "QDFEngine",
    "UntrustedPickleError",
    "build_qdf_model",
    "default_config",
    "default_model_path",
    "export_spk_model",
    "from_pymatgen",
    "load_qdf_model",
    "predict",
    "predict_energies",
    "save_qdf_model",
    "validate_atoms",
]
