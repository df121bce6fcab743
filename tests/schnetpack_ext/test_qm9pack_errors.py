"""Dataset building from broken qm9pack data: a clear error naming file and row, no partial db."""

import itertools
import os
import shutil

import pytest

import schnetpack_ext.datasets.qm9pack as mod
from schnetpack_ext.datasets import QM9Pack, QM9PackDataError, build_qm9pack_db, qm9pack_atoms


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A copy of qm9pack's data folder with the first 6 molecules of each file."""
    real = mod.qm9pack_data_dir()
    d = tmp_path / "data"
    d.mkdir()
    for name in mod._CSV_FILES:
        with open(real / name, newline="") as f:
            (d / name).write_text("".join(itertools.islice(f, 7)))
    monkeypatch.setattr(mod, "qm9pack_data_dir", lambda: d)
    return d


def _edit_line(path, line_no, edit):
    lines = path.read_text().splitlines(keepends=True)
    lines[line_no] = edit(lines[line_no])
    path.write_text("".join(lines))


def test_copy_reads(data_dir):
    assert len(list(qm9pack_atoms("all"))) == 18


BROKEN = [
    ("missing_file", lambda d: os.remove(d / "qm9_part2.csv"), FileNotFoundError,
     r"qm9_part2.csv is missing: the qm9pack installation is incomplete"),
    ("header_without_columns", lambda d: _edit_line(d / "qm9_part1.csv", 0, lambda s: s.replace("N_atoms", "n")),
     QM9PackDataError, r"qm9_part1.csv: corrupted qm9pack file, the header lacks \['N_atoms'\]"),
    ("bad_atom_count", lambda d: _edit_line(d / "qm9_part1.csv", 1, lambda s: s.replace(",5,", ",five,", 1)),
     QM9PackDataError, r"qm9_part1.csv, line 2: corrupted qm9pack row \(N_atoms = 'five'\)"),
    ("truncated_row", lambda d: _edit_line(d / "qm9_part1.csv", 2, lambda s: s[:120] + "\n"),
     QM9PackDataError, r"corrupted qm9pack row 'dsgdb9nsd_000002.xyz'"),
    ("unknown_element", lambda d: _edit_line(d / "qm9_part1.csv", 1, lambda s: s.replace("'C'", "'Si'")),
     QM9PackDataError, r"corrupted qm9pack row 'dsgdb9nsd_000001.xyz': KeyError: 'Si'"),
    ("binary_garbage", lambda d: (d / "qm9_part3.csv").write_bytes(bytes(range(256)) * 16),
     QM9PackDataError, r"qm9_part3.csv, line \d+: corrupted qm9pack file"),
]


@pytest.mark.parametrize("case_id, breakit, error, match", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_data_gives_a_clear_error_and_no_database(data_dir, tmp_path, case_id, breakit, error, match):
    breakit(data_dir)
    with pytest.raises(error, match=match):
        list(qm9pack_atoms("all"))
    out = tmp_path / "db"
    out.mkdir()
    with pytest.raises(error, match=match):
        build_qm9pack_db(out / "qm9.db", "all", progress=False, batch_size=4)
    assert os.listdir(out) == []  # no partial database, no temp file
    dm = QM9Pack(subset="all", datapath=str(out / "qm9.db"), batch_size=4)
    with pytest.raises(error, match=match):
        dm.prepare_data()


def test_corrupted_cached_database_is_named(tmp_path, data_dir):
    db = tmp_path / "qm9.db"
    build_qm9pack_db(db, "all", progress=False)
    shutil.copy(db, tmp_path / "good.db")
    db.write_bytes(b"not a database" * 100)
    dm = QM9Pack(subset="all", datapath=str(db), batch_size=4)
    with pytest.raises(QM9PackDataError, match=r"qm9.db is not a valid ASE database .* delete it"):
        dm.prepare_data()
    with pytest.raises(QM9PackDataError, match="delete it"):
        dm.setup()
    # with the split file present, setup checks the database too
    good = QM9Pack(subset="all", datapath=str(tmp_path / "good.db"), batch_size=4)
    good.prepare_data()
    shutil.copy(good.split_file, dm.split_file)
    with pytest.raises(QM9PackDataError, match="delete it"):
        dm.setup()
