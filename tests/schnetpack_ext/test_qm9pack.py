import csv
import os

import numpy as np
import pytest
import torch
from ase.units import Hartree

from schnetpack.data import ASEAtomsData
from schnetpack_ext.datasets import (
    QM9PACK_ATOMREFS_HARTREE,
    QM9Pack,
    build_qm9pack_db,
    make_split,
    qm9pack_atoms,
    qm9pack_data_dir,
    read_qm9pack_names,
)


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("qm9") / "first50.db"
    build_qm9pack_db(path, "under14", max_molecules=50, progress=False)
    return path


def test_check_value_and_atomrefs(small_db):
    data = ASEAtomsData(str(small_db))
    assert len(data) == 50
    names = read_qm9pack_names(small_db)
    i = names.index("dsgdb9nsd_000014")
    row = data[i]
    assert row["atomization_energy"].item() == pytest.approx(-33.00661185800112, abs=1e-4)
    refs = data.atomrefs["energy_U0"]  # SchNetPack hands atomrefs out as float32
    assert refs[6].item() == pytest.approx(QM9PACK_ATOMREFS_HARTREE[6] * Hartree, rel=1e-6)
    e_sum = sum(QM9PACK_ATOMREFS_HARTREE[int(z)] * Hartree for z in row["_atomic_numbers"])
    assert row["energy_U0"].item() - e_sum == pytest.approx(row["atomization_energy"].item(), abs=1e-8)
    assert data.atomrefs["atomization_energy"].abs().sum().item() == 0
    # the iterator gives the same molecule without a database
    name, atoms, u0 = next((n, a, u) for n, a, u in qm9pack_atoms("under14", 20) if n == "dsgdb9nsd_000014")
    assert u0 == pytest.approx(row["energy_U0"].item())
    np.testing.assert_allclose(atoms.positions, row["_positions"].numpy())


def test_subset_sizes_from_csv():
    csv.field_size_limit(2**31 - 1)
    counts = {"under14": 0, "over15": 0}
    for fname in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
        with open(qm9pack_data_dir() / fname, newline="") as f:
            for row in csv.DictReader(f):
                counts["under14" if int(row["N_atoms"]) <= 14 else "over15"] += 1
    assert counts == {"under14": 14790, "over15": 116041}


def test_limited_iteration_keeps_index_order():
    names = [n for n, _, _ in qm9pack_atoms("over15", max_molecules=5)]
    assert len(names) == 5 and names == sorted(names)
    assert all(len(a) >= 15 for _, a, _ in qm9pack_atoms("over15", max_molecules=5))


def test_split_deterministic_disjoint_covering():
    tr, va, te = make_split(14790, (0.8, 0.1, 0.1), 1729)
    assert (len(tr), len(va), len(te)) == (11832, 1479, 1479)
    allidx = np.concatenate([tr, va, te])
    assert np.array_equal(np.sort(allidx), np.arange(14790))
    tr2, va2, te2 = make_split(14790, (0.8, 0.1, 0.1), 1729)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2) and np.array_equal(te, te2)
    assert not np.array_equal(tr, make_split(14790, (0.8, 0.1, 0.1), 1)[0])


def test_datamodule_cache_reuse_and_split(qdf_cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # AtomsDataModule writes splitting.lock in the cwd
    dm = QM9Pack(subset="under14", max_molecules=30, batch_size=4, num_workers=0)
    assert os.path.dirname(dm.datapath) == str(qdf_cache_dir)
    dm.setup()  # without prepare_data()
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (24, 3, 3)
    split = np.load(dm.split_file)
    assert sorted(np.concatenate([split[k] for k in ("train_idx", "val_idx", "test_idx")])) == list(range(30))
    mtime = os.stat(dm.datapath).st_mtime_ns
    dm2 = QM9Pack(subset="under14", max_molecules=30, batch_size=4, num_workers=0)
    assert dm2.datapath == dm.datapath
    dm2.prepare_data()
    dm2.setup()
    assert os.stat(dm.datapath).st_mtime_ns == mtime  # not rebuilt
    assert dm2.train_idx == dm.train_idx
    batch = next(iter(dm2.train_dataloader()))
    assert batch["energy_U0"].shape == (4,)


def test_in_memory_data_gives_the_database_values_every_time(qdf_cache_dir, tmp_path, monkeypatch):
    from schnetpack.transform import CastTo32, MatScipyNeighborList, RemoveOffsets

    from schnetpack_ext.datasets import InMemoryASEAtomsData

    monkeypatch.chdir(tmp_path)

    def module(in_memory):
        # RemoveOffsets changes the energy in place: a store that handed out its own
        # tensors would lose the offset again on every access
        transforms = [RemoveOffsets("energy_U0", remove_mean=True, remove_atomrefs=True),
                      MatScipyNeighborList(cutoff=4.75), CastTo32()]
        dm = QM9Pack(subset="under14", max_molecules=30, batch_size=4, num_workers=0,
                     in_memory=in_memory, transforms=transforms)
        dm.setup()
        return dm

    plain, kept = module(False), module(True)
    assert not isinstance(plain.dataset, InMemoryASEAtomsData)
    assert isinstance(kept.dataset, InMemoryASEAtomsData)
    assert kept.train_idx == plain.train_idx and kept.val_idx == plain.val_idx
    for _ in range(3):  # first read, then from memory
        for i in range(len(plain.train_dataset)):
            a, b = plain.train_dataset[i], kept.train_dataset[i]
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), key
    # one store for the whole database, shared by the splits
    assert kept.val_dataset._store is kept.train_dataset._store is kept.dataset._store
    assert len(kept.dataset._store) == len(kept.train_dataset)
    kept.val_dataset[0]
    assert len(kept.dataset._store) == len(kept.train_dataset) + 1


def test_over15_is_all_test(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dm = QM9Pack(subset="over15", max_molecules=12, datapath=str(tmp_path / "o15.db"), batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (0, 0, 12)


def test_interrupted_build_leaves_no_db(tmp_path, monkeypatch):
    import schnetpack_ext.datasets.qm9pack as mod

    real = mod.qm9pack_atoms

    def boom(*args, **kwargs):
        yield from real("under14", 3)
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "qm9pack_atoms", boom)
    with pytest.raises(KeyboardInterrupt):
        build_qm9pack_db(tmp_path / "x.db", "under14", 10, progress=False, batch_size=2)
    assert os.listdir(tmp_path) == []
