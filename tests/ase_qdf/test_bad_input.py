"""The bad-input matrix (docs/reliability.md): every case through every entry point.

Molecule cases (:data:`CASES`) go through the ASE calculator, :func:`predict`
(``on_error="raise"`` and ``"record"``), :func:`predict_energies` and ``qdf screen``
(all cases as records of one extxyz file, between good molecules). File cases
(:data:`FILE_CASES`) go through ``qdf screen``. Each must give an
:class:`InvalidMoleculeError` (a ``ValueError``) or a CSV error row naming the
problem, raised before the model runs (no torch frame in the traceback).
"""

import csv
import os
import resource

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import write

from ase_qdf import InvalidMoleculeError, QDFCalculator, cli, predict, predict_energies
from ase_qdf.validation import MAX_ATOMS


def _set(atoms, **info):
    atoms.info.update(info)
    return atoms


def _moved(name, index, position=None, to=None):
    atoms = molecule(name)
    atoms.positions[index] = atoms.positions[to] if to is not None else position
    return atoms


def _periodic():
    atoms = molecule("H2O", vacuum=4.0)
    atoms.pbc = True
    return atoms


def _nan(value):
    atoms = molecule("H2O")
    atoms.positions[1, 2] = value
    return atoms


def _charges():
    atoms = molecule("H2O")
    atoms.set_initial_charges([0.0, 0.0, -1.0])
    return atoms


def _magmoms():
    atoms = molecule("H2O")
    atoms.set_initial_magnetic_moments([0.0, 1.0, 0.0])
    return atoms


def _dummy():
    atoms = molecule("H2O")
    atoms.numbers[0] = 0
    return atoms


def _radical():
    return Atoms("CH3", positions=[[0, 0, 0], [1.08, 0, 0], [-0.54, 0.94, 0], [-0.54, -0.94, 0]])


def _huge(n=100_000):
    """n hydrogen atoms 1 Å apart on a cubic lattice (a few MB, never given to the model)."""
    side = int(np.ceil(n ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    return Atoms(numbers=np.ones(n, dtype=int), positions=grid.astype(float))


#: (case id, molecule factory, InvalidMoleculeError.reason, regex the message must match)
CASES = [
    ("unsupported_element", lambda: molecule("SiH4"), "element", r"Si.*supports only H, C, N, O, F"),
    ("dummy_atom", _dummy, "element", r"unsupported element\(s\) X"),
    ("periodic_cell", _periodic, "pbc", r"periodic boundary conditions"),
    ("empty", Atoms, "empty", r"no atoms"),
    ("nan_position", lambda: _nan(np.nan), "non_finite", r"non-finite positions .* \[1\]"),
    ("inf_position", lambda: _nan(np.inf), "non_finite", r"non-finite positions .* \[1\]"),
    ("overlapping_atoms", lambda: _moved("CH4", 3, to=0), "too_close", r"atoms 0 \(C\) and 3 \(H\) are 0\.000 Å apart"),
    ("too_close_atoms", lambda: _moved("H2O", 1, [0.0, 0.3, 0.119262]), "too_close", r"closer than 0\.5 Å"),
    ("charge_in_info", lambda: _set(molecule("H2O"), charge=1), "charge", r"total charge is 1"),
    ("charge_from_initial_charges", _charges, "charge", r"total charge is -1"),
    ("charge_not_a_number", lambda: _set(molecule("H2O"), charge="abc"), "charge", r"'charge'.*not a finite number"),
    ("spin_in_info", lambda: _set(molecule("H2O"), spin=1), "spin", r"spin.*closed-shell"),
    ("triplet_multiplicity", lambda: _set(molecule("H2O"), multiplicity=3), "spin", r"multiplicity 3"),
    ("initial_magnetic_moments", _magmoms, "spin", r"magnetic moments on atoms \[1\]"),
    ("odd_electron_count", _radical, "odd_electrons", r"odd electron count \(9\)"),
    ("100000_atoms", _huge, "too_large", r"100000 atoms is more than the limit of 10000"),
]
IDS = [c[0] for c in CASES]


def _no_torch_frames(excinfo):
    frames = [str(entry.path) for entry in excinfo.traceback]
    assert not [f for f in frames if f"{os.sep}torch{os.sep}" in f or "schnetpack" in f], frames


def test_matrix_size_is_documented():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "reliability.md")).read()
    for case_id in IDS + [c[0] for c in FILE_CASES]:
        assert f"`{case_id}`" in text, case_id
    assert f"{len(CASES)} molecule cases" in text and f"{len(FILE_CASES)} file cases" in text


@pytest.fixture(scope="module")
def calc(model32):
    return QDFCalculator(model32, device="cpu")


@pytest.mark.parametrize("case_id, make, reason, match", CASES, ids=IDS)
def test_calculator_refuses(calc, case_id, make, reason, match):
    # the same calculator first computes a good molecule: cached results must not leak
    good = molecule("H2O")
    good.calc = calc
    assert np.isfinite(good.get_potential_energy())
    atoms = make()
    atoms.calc = calc
    for getter in (atoms.get_potential_energy, atoms.get_forces):
        with pytest.raises(InvalidMoleculeError, match=match) as info:
            getter()
        assert info.value.reason == reason and isinstance(info.value, ValueError)
        _no_torch_frames(info)


@pytest.mark.parametrize("case_id, make, reason, match", CASES, ids=IDS)
def test_batch_api_refuses_or_records(model32, case_id, make, reason, match):
    good = [molecule("CH4"), molecule("NH3")]
    with pytest.raises(InvalidMoleculeError, match="molecule 1: .*" + match) as info:
        predict([good[0], make(), good[1]], model=model32, device="cpu")
    assert info.value.reason == reason
    _no_torch_frames(info)
    with pytest.raises(InvalidMoleculeError, match="molecule 0: .*" + match):
        predict_energies([make()], model=model32, device="cpu")
    results = predict([good[0], make(), good[1]], model=model32, device="cpu", on_error="record")
    assert [r["error"] is None for r in results] == [True, False, True]
    assert results[1]["error"].startswith("InvalidMoleculeError: ")
    assert np.isnan(results[1]["energy"]) and results[1]["energies"] is None
    alone = predict_energies(good, model=model32, device="cpu")
    np.testing.assert_allclose([results[0]["energy"], results[2]["energy"]], alone, rtol=0, atol=1e-4)


def test_oversized_input_is_refused_before_memory_is_used(model32):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    atoms = _huge()
    atoms.calc = QDFCalculator(model32, device="cpu")
    with pytest.raises(InvalidMoleculeError, match="limit"):
        atoms.get_potential_energy()
    with pytest.raises(InvalidMoleculeError, match="limit"):
        predict([atoms], model=model32)
    # ru_maxrss is in KiB on Linux: a few MB for the positions, nothing near the ~60 GiB a model run needs
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * 1024


def test_non_atoms_objects_are_refused_by_the_batch_api(model32):
    for bad in ("H2O", None, molecule("H2O").positions):
        with pytest.raises(InvalidMoleculeError, match="expected an ase.Atoms"):
            predict([bad], model=model32)
        assert "ase.Atoms" in predict([bad], model=model32, on_error="record")[0]["error"]


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == cli.CSV_COLUMNS
        return [dict(zip(cli.CSV_COLUMNS, row)) for row in reader]


def test_screen_records_every_case_once_between_good_molecules(tmp_path, model_path, model32):
    frames, expected = [], {}
    for k, (case_id, make, reason, match) in enumerate(CASES):
        frames.append(molecule(["H2O", "CH4", "HCN"][k % 3]))
        expected[len(frames)] = (case_id, match)
        frames.append(make())
    frames.append(molecule("NH3"))
    src = tmp_path / "mixed.extxyz"
    write(src, frames, format="extxyz")
    out = tmp_path / "out.csv"
    assert cli.main(["screen", str(src), "-o", str(out), "--model", str(model_path), "--quiet",
                     "--batch-size", "4", "--dtype", "float32", "--device", "cpu"]) == 0
    rows = _rows(out)
    assert [int(r["index"]) for r in rows] == list(range(len(frames)))  # each record once, in order
    good_idx = [i for i in range(len(frames)) if i not in expected]
    energies = predict_energies([frames[i] for i in good_idx], model=model32, device="cpu")
    for i, e in zip(good_idx, energies):
        assert rows[i]["error"] == "" and float(rows[i]["energy_eV"]) == pytest.approx(e, abs=1e-4)
    import re

    for i, (case_id, match) in expected.items():
        assert rows[i]["energy_eV"] == "", case_id
        assert rows[i]["error"].startswith("InvalidMoleculeError: "), (case_id, rows[i]["error"])
        assert re.search(match, rows[i]["error"]), (case_id, rows[i]["error"])


def _truncated(path):
    path.write_text("3\n\nO 0 0 0.119\nH 0 0.763 -0.477\nH 0 -0.763 -0.477\n5\n\nC 0 0 0\n")


#: (case id, how to create it under the inputs folder (name -> None), input argument, expected rows)
FILE_CASES = [
    ("binary_garbage_xyz", lambda d: (d / "garbage.xyz").write_bytes(bytes(range(256)) * 8),
     "garbage.xyz", [("garbage.xyz", 0, r"^unreadable file: ASE: .*; pymatgen: ")]),
    ("truncated_xyz", lambda d: _truncated(d / "truncated.xyz"), "truncated.xyz",
     [("truncated.xyz", 0, None), ("truncated.xyz", 1, r"^read error after 1 molecule\(s\)")]),
    ("empty_file", lambda d: (d / "empty.xyz").write_bytes(b""), "empty.xyz",
     [("empty.xyz", 0, r"^unreadable file: ASE: .*[Ee]mpty file")]),
    ("no_molecules", lambda d: (d / "blank.xyz").write_text("\n\n"), "blank.xyz",
     [("blank.xyz", 0, r"^the file contains no molecules")]),
    ("nonexistent_path", lambda d: None, "missing.xyz", [("missing.xyz", 0, r"^FileNotFoundError: no such file")]),
    ("directory", lambda d: (d / "folder.xyz").mkdir(), "folder.xyz",
     [("folder.xyz", 0, r"^IsADirectoryError: .* is a directory")]),
    ("glob_matching_nothing", lambda d: None, "nothing_*.xyz", [("nothing_*.xyz", 0, r"^no file matches")]),
]


@pytest.mark.parametrize("case_id, create, arg, expected", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_screen_file_cases_give_error_rows_and_go_on(tmp_path, model_path, case_id, create, arg, expected):
    d = tmp_path / "in"
    d.mkdir()
    create(d)
    write(d / "zz_good.xyz", molecule("H2O"))
    out = tmp_path / "out.csv"
    rc = cli.main(["screen", str(d / arg), str(d / "zz_good.xyz"), "-o", str(out), "--model", str(model_path),
                   "--quiet", "--device", "cpu"])
    assert rc == 0  # the good molecule after the bad input was computed
    rows = _rows(out)
    assert len(rows) == len(expected) + 1
    import re

    for row, (name, index, match) in zip(rows, expected):
        assert row["source"] == str(d / name) and row["index"] == str(index)
        if match is None:
            assert row["error"] == "" and row["energy_eV"] != ""
        else:
            assert re.search(match, row["error"]), row["error"]
            assert row["energy_eV"] == ""
    assert rows[-1]["source"] == str(d / "zz_good.xyz") and rows[-1]["error"] == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_screen_unreadable_file(tmp_path, model_path):
    src = tmp_path / "secret.xyz"
    write(src, molecule("H2O"))
    src.chmod(0)
    out = tmp_path / "out.csv"
    assert cli.main(["screen", str(src), "-o", str(out), "--model", str(model_path), "--quiet"]) == 1
    assert "PermissionError" in _rows(out)[0]["error"]


def test_screen_bad_output_path_is_a_clear_error(tmp_path, model_path, capsys):
    write(tmp_path / "a.xyz", molecule("H2O"))
    for out, match in [(tmp_path / "no" / "such" / "dir" / "out.csv", "cannot write the output"),
                       (tmp_path, "is a directory")]:
        rc = cli.main(["screen", str(tmp_path / "a.xyz"), "-o", str(out), "--model", str(model_path), "--quiet"])
        assert rc == 2
        assert match in capsys.readouterr().err


def test_size_limit_is_adjustable(model64):
    atoms = molecule("C6H6")
    with pytest.raises(InvalidMoleculeError, match="12 atoms is more than the limit of 10"):
        from ase_qdf.validation import validate_atoms

        validate_atoms(atoms, max_atoms=10)
    assert MAX_ATOMS == 10_000


def test_batches_are_cut_at_the_atom_budget(model32, monkeypatch):
    from ase_qdf import QDFEngine

    engine = QDFEngine(model32, device="cpu")
    calls = []
    evaluate = engine.evaluate

    def spy(atoms_list, forces=False):
        calls.append([len(a) for a in atoms_list])
        return evaluate(atoms_list, forces=forces)

    monkeypatch.setattr(engine, "evaluate", spy)
    mols = [molecule(n) for n in ("C6H6", "H2O", "CH4", "CH3CH2OH", "NH3", "HCN")]  # 12 3 5 9 4 3 atoms
    results = predict(mols, model=engine, batch_size=64, max_batch_atoms=10)
    assert calls == [[12], [3, 5], [9], [4, 3]]  # a molecule over the budget runs alone
    reference = predict_energies(mols, model=model32, batch_size=1)
    np.testing.assert_allclose([r["energy"] for r in results], reference, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="max_batch_atoms"):
        predict(mols, model=engine, max_batch_atoms=0)


def test_far_apart_and_far_away_atoms_are_cheap_and_exact(model32, model64):
    """Extent does not cost memory (k-d tree pairs), and float32 keeps the geometry far from the origin."""
    base = molecule("CH3CH2OH")
    e64 = predict_energies([base], model=model64, dtype="float64")[0]
    shifted = base.copy()
    shifted.positions += 1e9  # float32 positions alone would lose the geometry (spacing 64 Å there)
    far_atom = base.copy()
    far_atom.positions[8] += [1e7, 0, 0]  # one H 10^7 Å away: matscipy's cell binning took GiB here
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    e32 = predict_energies([base, shifted, far_atom], model=model32, dtype="float32")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * 1024
    assert e32[0] == pytest.approx(e64, abs=1e-3)
    assert e32[1] == pytest.approx(e32[0], abs=1e-3)
    # beyond the cutoff the distance does not matter (the QDF normalisation still couples
    # the far atom to the molecule, so it is not the sum of the fragments)
    near = base.copy()
    near.positions[8] += [100.0, 0, 0]
    assert e32[2] == pytest.approx(predict_energies([near], model=model64, dtype="float64")[0], abs=1e-3)
