"""QM9 from the ``qm9pack`` PyPI package, as a SchNetPack dataset and data module.

``qm9pack`` ships QM9 (130,831 molecules, the 3,054 "uncharacterized" ones removed) as
three CSV files. Its ``__init__`` imports ``pkg_resources`` (gone from current
setuptools), so the package is never imported here: only its data directory is located.

Subsets (number of atoms, hydrogens included):

* ``"under14"``: N ≤ 14, 14,790 molecules (the QDF paper's "QM9under14atoms");
* ``"over15"``: N ≥ 15, 116,041 molecules (extrapolation test only);
* ``"all"``: every molecule.

Energies are stored in eV (1 Ha = ``ase.units.Hartree``):

* ``energy_U0``: internal energy at 0 K, with SchNetPack atomrefs (isolated-atom U0);
* ``atomization_energy``: U0 − Σ atomrefs (atomrefs of this property are zero).

The QM9 name of every row (``"dsgdb9nsd_000014"``) and its QM9 index are stored as
ASE-db key-value pairs ``qm9_name`` / ``qm9_index`` (see :func:`read_qm9pack_names`);
SchNetPack's loader ignores them.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from ase import Atoms
from ase.units import Hartree
from schnetpack.data import AtomsDataModule, ASEAtomsData

__all__ = [
    "SUBSET_SIZES",
    "QM9PackDataError",
    "QM9PACK_ATOMREFS_HARTREE",
    "QM9PACK_SUBSETS",
    "qm9pack_data_dir",
    "qm9pack_rows",
    "qm9pack_atoms",
    "qm9pack_atomrefs_ev",
    "build_qm9pack_db",
    "read_qm9pack_names",
    "make_split",
    "default_cache_dir",
    "InMemoryASEAtomsData",
    "QM9Pack",
]

#: U0 of the isolated atoms (Hartree), QM9's atomrefs, by atomic number.
QM9PACK_ATOMREFS_HARTREE = {1: -0.500273, 6: -37.846772, 7: -54.583861, 8: -75.064579, 9: -99.718730}
QM9PACK_SUBSETS = ("under14", "over15", "all")
_SYMBOL_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_CSV_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_CSV_COLUMNS = ("N_atoms", "XYZ_file", "Elements", "XYZ_Ang", "InternalEnergy_0K_au")


class QM9PackDataError(ValueError):
    """A qm9pack CSV file is corrupted (bad header, unparsable row, not text)."""


#: molecules per subset of the qm9pack data (the paper's QM9under14atoms / QM9over15atoms)
SUBSET_SIZES = {"under14": 14790, "over15": 116041, "all": 130831}

def qm9pack_data_dir() -> Path:
    """Directory holding qm9pack's CSV files, found without importing ``qm9pack``."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the `qm9pack` package is not installed (pip install qm9pack)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _in_subset(n_atoms: int, subset: str) -> bool:
    if subset == "under14":
        return n_atoms <= 14
    if subset == "over15":
        return n_atoms >= 15
    if subset == "all":
        return True
    raise ValueError(f"unknown subset {subset!r}; choose one of {QM9PACK_SUBSETS}")


def qm9pack_rows(subset: str = "all", max_molecules: Optional[int] = None) -> Iterator[dict]:
    """Raw CSV rows (dicts) of ``subset`` in QM9 index order, at most ``max_molecules``."""
    _in_subset(0, subset)  # validate early
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    n = 0
    if max_molecules is not None and max_molecules <= 0:
        return
    data_dir = qm9pack_data_dir()
    for fname in _CSV_FILES:
        path = data_dir / fname
        if not path.is_file():
            raise FileNotFoundError(
                f"qm9pack data file {path} is missing: the qm9pack installation is incomplete "
                "(reinstall it: pip install --force-reinstall qm9pack)"
            )
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            try:
                header = reader.fieldnames or []
                missing = [c for c in _CSV_COLUMNS if c not in header]
                if missing:
                    raise QM9PackDataError(f"{path}: corrupted qm9pack file, the header lacks {missing}")
                for row in reader:
                    try:
                        n_atoms = int(row["N_atoms"])
                    except (TypeError, ValueError):
                        raise QM9PackDataError(
                            f"{path}, line {reader.line_num}: corrupted qm9pack row "
                            f"(N_atoms = {row['N_atoms']!r})"
                        ) from None
                    if not _in_subset(n_atoms, subset):
                        continue
                    yield row
                    n += 1
                    if max_molecules is not None and n >= max_molecules:
                        return
            except (UnicodeDecodeError, csv.Error) as err:
                raise QM9PackDataError(
                    f"{path}, line {reader.line_num}: corrupted qm9pack file "
                    f"({type(err).__name__}: {err})"
                ) from None


def _row_to_atoms(row: dict) -> Tuple[str, Atoms, float]:
    name = row["XYZ_file"].rsplit(".xyz", 1)[0]
    symbols = [s.strip().strip("'\"") for s in row["Elements"].strip()[1:-1].split(",")]
    xyz = np.array(row["XYZ_Ang"].replace("[", "").replace("]", "").split(","), dtype=np.float64)
    atoms = Atoms(numbers=[_SYMBOL_Z[s] for s in symbols], positions=xyz.reshape(-1, 3))
    if len(atoms) != int(row["N_atoms"]):
        raise ValueError(f"{name}: N_atoms={row['N_atoms']} but {len(atoms)} atoms parsed")
    return name, atoms, float(row["InternalEnergy_0K_au"]) * Hartree


def qm9pack_atoms(
    subset: str = "under14", max_molecules: Optional[int] = None, indices: Optional[Sequence[int]] = None
) -> Iterator[Tuple[str, Atoms, float]]:
    """Yield ``(name, atoms, u0_eV)`` for the molecules of ``subset`` in QM9 index order.

    Args:
        subset: ``"under14"``, ``"over15"`` or ``"all"``.
        max_molecules: keep the first N molecules of the subset.
        indices: only these positions within the subset, in this order (only
            they are parsed: a split or a random sample costs its own size).

    Raises:
        FileNotFoundError: a qm9pack CSV file is missing.
        QM9PackDataError: (``ValueError``) a CSV file or row is corrupted.
    """
    rows = qm9pack_rows(subset, max_molecules)
    if indices is not None:
        table = list(rows)
        rows = (table[i] for i in indices)
    for row in rows:
        try:
            molecule = _row_to_atoms(row)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise QM9PackDataError(
                f"corrupted qm9pack row {row.get('XYZ_file')!r}: {type(err).__name__}: {err}"
            ) from None
        yield molecule


def qm9pack_atomrefs_ev() -> List[float]:
    """U0 atomrefs in eV as a length-100 list indexed by atomic number (zeros elsewhere)."""
    refs = [0.0] * 100
    for z, e in QM9PACK_ATOMREFS_HARTREE.items():
        refs[z] = e * Hartree
    return refs


def build_qm9pack_db(
    path,
    subset: str = "under14",
    max_molecules: Optional[int] = None,
    progress: bool = True,
    batch_size: int = 1000,
) -> Path:
    """Write ``subset`` of QM9 to a SchNetPack ``ASEAtomsData`` database at ``path``.

    The database is written to a temporary file in the same directory and renamed into
    place at the end, so an interrupted build never leaves a partial database at
    ``path``. An existing file at ``path`` is replaced.

    Returns:
        the path of the database.
    """
    from tqdm import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.db", dir=path.parent)
    os.close(fd)
    os.remove(tmp)  # ASE creates the db itself
    refs = qm9pack_atomrefs_ev()
    refs_arr = np.asarray(refs)
    try:
        data = ASEAtomsData.create(
            tmp,
            distance_unit="Ang",
            property_unit_dict={"energy_U0": "eV", "atomization_energy": "eV"},
            atomrefs={"energy_U0": refs, "atomization_energy": [0.0] * 100},
        )
        total = SUBSET_SIZES[subset]
        if max_molecules is not None:
            total = min(total, max_molecules)
        bar = tqdm(total=total, desc=f"QM9 {subset} -> {path.name}", disable=not progress, unit="mol")
        atoms_list, props, meta = [], [], []

        def flush():
            # one SQLite transaction per batch instead of one per molecule
            with data.conn:
                data.add_systems(props, atoms_list, meta)
            bar.update(len(props))
            atoms_list.clear(), props.clear(), meta.clear()

        for name, atoms, u0 in qm9pack_atoms(subset, max_molecules):
            atoms_list.append(atoms)
            e_at = u0 - refs_arr[atoms.numbers].sum()
            props.append({"energy_U0": np.array([u0]), "atomization_energy": np.array([e_at])})
            meta.append({"qm9_name": name, "qm9_index": int(name.rsplit("_", 1)[1])})
            if len(props) >= batch_size:
                flush()
        if props:
            flush()
        bar.close()
        del data
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _check_database(path) -> int:
    """Number of rows of an existing database; a clear error if it is not one."""
    import sqlite3

    from ase.db import connect

    try:
        with connect(str(path), type="db", use_lock_file=False) as conn:
            return conn.count()
    except sqlite3.DatabaseError as err:
        raise QM9PackDataError(
            f"{path} is not a valid ASE database ({err}); it is corrupted or not from "
            "build_qm9pack_db: delete it and it is rebuilt"
        ) from None


def read_qm9pack_names(path) -> List[str]:
    """QM9 names of the rows of a database written by :func:`build_qm9pack_db`, row order."""
    from ase.db import connect

    with connect(str(path), use_lock_file=False) as conn:
        return [row.key_value_pairs["qm9_name"] for row in conn.select()]


def make_split(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 1729):
    """Random train/val/test index split of ``range(n)``.

    ``n_val = floor(f_val·n)``, ``n_test = floor(f_test·n)``; when the fractions sum to 1
    the training set takes the rest (so no molecule is lost to rounding), otherwise
    ``n_train = floor(f_train·n)``. For 14,790 molecules and 8:1:1: 11,832/1,479/1,479.
    The permutation is ``numpy.random.default_rng(seed).permutation(n)``.
    """
    f_train, f_val, f_test = (float(f) for f in fractions)
    if min(f_train, f_val, f_test) < 0 or f_train + f_val + f_test > 1 + 1e-9:
        raise ValueError(f"invalid split fractions {fractions}")
    n_val, n_test = int(np.floor(f_val * n + 1e-9)), int(np.floor(f_test * n + 1e-9))
    if abs(f_train + f_val + f_test - 1) < 1e-9:
        n_train = n - n_val - n_test
    else:
        n_train = int(np.floor(f_train * n + 1e-9))
    perm = np.random.default_rng(seed).permutation(n)
    return (
        np.sort(perm[:n_train]),
        np.sort(perm[n_train : n_train + n_val]),
        np.sort(perm[n_train + n_val : n_train + n_val + n_test]),
    )


def default_cache_dir() -> Path:
    """``$QDF_CACHE_DIR``, else ``$XDG_CACHE_HOME/ase-qdf``, else ``~/.cache/ase-qdf``."""
    if os.environ.get("QDF_CACHE_DIR"):
        return Path(os.environ["QDF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ase-qdf"


class InMemoryASEAtomsData(ASEAtomsData):
    """An :class:`~schnetpack.data.ASEAtomsData` that keeps every molecule it has read.

    Reading one QM9 molecule from the ASE database (SQLite, JSON-encoded arrays) costs
    about 1.8 ms on a 2-core CPU, more than all the training transforms together, and an
    epoch reads every training molecule again. Here each molecule is read once and kept
    as tensors (QM9 ``under14``: about 15 MB; all of QM9: about 150 MB); every access
    returns fresh copies, because transforms change their inputs in place. Subsets
    (:meth:`subset`, the train/val/test splits) share the one store. Each data-loader
    worker process fills its own.

    Arguments are those of :class:`~schnetpack.data.ASEAtomsData`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._store: Dict[tuple, Dict[str, torch.Tensor]] = {}

    def _get_properties(self, conn, idx, load_properties, load_structure, load_metadata=False):
        key = (int(idx), tuple(load_properties), bool(load_structure), bool(load_metadata))
        properties = self._store.get(key)
        if properties is None:
            properties = super()._get_properties(conn, idx, load_properties, load_structure, load_metadata)
            self._store[key] = properties
        return {name: value.clone() if isinstance(value, torch.Tensor) else value
                for name, value in properties.items()}


class QM9Pack(AtomsDataModule):
    """SchNetPack data module for QM9 from ``qm9pack``.

    ``prepare_data()`` builds the database once (reused afterwards) and writes the split
    file if missing; ``setup()`` does the same when called without ``prepare_data()``.

    Split: see :func:`make_split` (seed ``split_seed``, ``split_fractions``); for
    ``subset="over15"`` every molecule is in the test set (never trained on).

    Args:
        subset: ``"under14"``, ``"over15"`` or ``"all"``.
        max_molecules: keep only the first N molecules of the subset (QM9 index order).
        datapath: database path; default ``<cache dir>/qm9pack_<subset>[_first<N>].db``
            with the cache dir of :func:`default_cache_dir`.
        split_seed: seed of the random split.
        split_fractions: train/val/test fractions.
        split_file: npz split file; default next to the database, named after seed and
            fractions.
        batch_size: training batch size.
        in_memory: keep every molecule in memory once read
            (:class:`InMemoryASEAtomsData`) instead of reading it from the database in
            every epoch; the values are the same either way.
        **kwargs: passed on to :class:`schnetpack.data.AtomsDataModule`.
    """

    def __init__(
        self,
        subset: str = "under14",
        max_molecules: Optional[int] = None,
        datapath: Optional[str] = None,
        split_seed: int = 1729,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_file: Optional[str] = None,
        batch_size: int = 32,
        in_memory: bool = True,
        **kwargs,
    ):
        _in_subset(0, subset)
        self.in_memory = bool(in_memory)
        self.subset = subset
        self.max_molecules = None if max_molecules is None else int(max_molecules)
        self.split_seed = int(split_seed)
        self.split_fractions = tuple(float(f) for f in split_fractions)
        if datapath is None:
            limit = "" if self.max_molecules is None else f"_first{self.max_molecules}"
            datapath = str(default_cache_dir() / f"qm9pack_{subset}{limit}.db")
        if split_file is None:
            fr = "-".join(f"{f:g}" for f in self.split_fractions)
            tag = "alltest" if subset == "over15" else f"seed{self.split_seed}_{fr}"
            split_file = str(Path(datapath).with_suffix("")) + f"_split_{tag}.npz"
        for key in ("num_train", "num_val", "num_test"):
            kwargs.setdefault(key, None)
        super().__init__(datapath=str(datapath), batch_size=batch_size, split_file=str(split_file), **kwargs)

    def prepare_data(self):
        if not os.path.exists(self.datapath):
            build_qm9pack_db(self.datapath, self.subset, self.max_molecules)
        n = _check_database(self.datapath)
        if not os.path.exists(self.split_file):
            if self.subset == "over15":
                empty = np.zeros(0, dtype=np.int64)
                train, val, test = empty, empty, np.arange(n)
            else:
                train, val, test = make_split(n, self.split_fractions, self.split_seed)
            Path(self.split_file).parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".npz", dir=Path(self.split_file).parent)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, train_idx=train, val_idx=val, test_idx=test)
            os.replace(tmp, self.split_file)

    def setup(self, stage: Optional[str] = None):
        if not (os.path.exists(self.datapath) and os.path.exists(self.split_file)):
            self.prepare_data()
        else:
            _check_database(self.datapath)
        if not (self.in_memory and self.dataset is None):
            super().setup(stage)
            return
        # SchNetPack's setup() with the in-memory dataset in place of load_dataset()
        # (a data_workdir copy is moot when every molecule is read once)
        self.dataset = InMemoryASEAtomsData(
            datapath=self.datapath,
            load_properties=self.load_properties,
            property_units=self.property_units,
            distance_unit=self.distance_unit,
        )
        if self.train_idx is None:
            self._load_partitions()
        self._train_dataset = self.dataset.subset(self.train_idx)
        self._val_dataset = self.dataset.subset(self.val_idx)
        self._test_dataset = self.dataset.subset(self.test_idx)
        self._setup_transforms()
