"""Datasets and data modules for SchNetPack."""

from .qm9pack import (
    InMemoryASEAtomsData,
    QM9PackDataError,
    QM9PACK_ATOMREFS_HARTREE,
    QM9PACK_SUBSETS,
    QM9Pack,
    build_qm9pack_db,
    default_cache_dir,
    make_split,
    qm9pack_atomrefs_ev,
    qm9pack_atoms,
    qm9pack_data_dir,
    qm9pack_rows,
    SUBSET_SIZES,
    read_qm9pack_names,
)

__all__ = [
    "InMemoryASEAtomsData",
    "QM9PackDataError",
    "QM9PACK_ATOMREFS_HARTREE",
    "QM9PACK_SUBSETS",
    "QM9Pack",
    "build_qm9pack_db",
    "default_cache_dir",
    "make_split",
    "qm9pack_atomrefs_ev",
    "qm9pack_atoms",
    "qm9pack_data_dir",
    "qm9pack_rows",
    "SUBSET_SIZES",
    "read_qm9pack_names",
]
