import csv
import json
import sys
import types

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.io import read, write
from pymatgen.core import Molecule

from ase_qdf import cli, model_io

from ase_qdf.model_io import file_sha256, save_qdf_model

from .conftest import tiny_model
from .test_model_io import spk_training_model


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == cli.CSV_COLUMNS
        return [dict(zip(cli.CSV_COLUMNS, row)) for row in reader]


def _keys(rows):
    return [(r["source"], r["index"]) for r in rows]


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "mols"
    d.mkdir()
    write(d / "a_good.xyz", [molecule("H2O"), molecule("CH4"), molecule("CH3CH2OH")])
    write(d / "b_one.xyz", molecule("NH3"))
    write(d / "c_silicon.xyz", molecule("SiH4"))
    radical = Atoms("CH3", positions=[[0, 0, 0], [1.08, 0, 0], [-0.54, 0.94, 0], [-0.54, -0.94, 0]])
    write(d / "d_mixed.xyz", [molecule("HCN"), radical, molecule("CH3OH")])
    (d / "e_garbage.xyz").write_text("this is\nnot a molecule file\n")
    (d / "f_truncated.xyz").write_text("3\n\nO 0 0 0\nH 0 0 0.96\nH 0.93 0 -0.24\n5\n\nC 0 0 0\n")
    h2o = molecule("H2O")
    Molecule(h2o.get_chemical_symbols(), h2o.positions).to(filename=str(d / "g_pymatgen.json"))
    return d


def _screen(inputs_dir, out, model_path, *extra):
    return cli.main(["screen", str(inputs_dir / "*"), str(inputs_dir / "missing.xyz"), "-o", str(out),
                     "--model", str(model_path), "--batch-size", "2", "--quiet", *extra])


EXPECTED_ERRORS = {
    ("c_silicon.xyz", "0"): "Si",
    ("d_mixed.xyz", "1"): "odd electron",
    ("e_garbage.xyz", "0"): "unreadable",
    ("f_truncated.xyz", "1"): "read error",
    ("missing.xyz", "0"): "FileNotFoundError",
}


def test_screen_writes_every_input_once(tmp_path, inputs, model_path):
    out = tmp_path / "out.csv"
    assert _screen(inputs, out, model_path) == 0
    rows = _rows(out)
    keys = [(r["source"].rsplit("/", 1)[-1], r["index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 13
    for r, key in zip(rows, keys):
        if key in EXPECTED_ERRORS:
            assert EXPECTED_ERRORS[key] in r["error"] and r["energy_eV"] == ""
        else:
            assert r["error"] == "" and float(r["energy_eV"]) < 0, r
    by_key = dict(zip(keys, rows))
    assert by_key[("a_good.xyz", "2")]["formula"] == "C2H6O"
    assert by_key[("a_good.xyz", "2")]["n_atoms"] == "9"
    assert by_key[("g_pymatgen.json", "0")]["formula"] == "H2O"
    energy = float(by_key[("a_good.xyz", "0")]["energy_eV"])
    atomization = float(by_key[("a_good.xyz", "0")]["atomization_energy_eV"])
    assert energy == pytest.approx(float(by_key[("g_pymatgen.json", "0")]["energy_eV"]), abs=1e-5)
    from ase_qdf import predict_energies

    assert energy == pytest.approx(predict_energies([molecule("H2O")], model=model_path, device="cpu")[0], abs=1e-5)
    assert energy - atomization == pytest.approx(-2.0 * 0.500273 * 27.2114 - 75.064579 * 27.2114, abs=1e-2)


def test_screen_resumes_without_duplicates(tmp_path, inputs, model_path):
    out = tmp_path / "out.csv"
    assert _screen(inputs, out, model_path) == 0
    full = out.read_text()
    assert _screen(inputs, out, model_path) == 0
    assert out.read_text() == full  # nothing left to do
    # simulate a kill: the last rows are lost and the last line is cut in half
    lines = full.splitlines(keepends=True)
    out.write_text("".join(lines[:-4]) + lines[-4][:10])
    assert _screen(inputs, out, model_path) == 0
    rows = _rows(out)
    assert len(_keys(rows)) == len(set(_keys(rows))) == len(lines) - 1
    assert sorted(_keys(rows)) == sorted(_keys(_rows_from_text(full, tmp_path)))


def _rows_from_text(text, tmp_path):
    p = tmp_path / "copy.csv"
    p.write_text(text)
    return _rows(p)


def test_shards_are_disjoint_and_complete(tmp_path, inputs, model_path):
    full = tmp_path / "full.csv"
    assert _screen(inputs, full, model_path) == 0
    shard_keys = []
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}.csv"
        assert _screen(inputs, out, model_path, "--shard", f"{k}/3") == 0
        shard_keys.append(set(_keys(_rows(out))))
    union = set().union(*shard_keys)
    assert sum(len(s) for s in shard_keys) == len(union)
    assert union == set(_keys(_rows(full)))
    with pytest.raises(SystemExit):
        cli.main(["screen", "x.xyz", "-o", str(tmp_path / "o.csv"), "--shard", "4/3"])


def test_exit_status_nonzero_only_when_nothing_computed(tmp_path, inputs, model_path):
    out = tmp_path / "bad.csv"
    rc = cli.main(["screen", str(inputs / "c_silicon.xyz"), str(inputs / "e_garbage.xyz"),
                   "-o", str(out), "--model", str(model_path), "--quiet"])
    assert rc == 1
    assert len(_rows(out)) == 2


def test_screen_writes_forces(tmp_path, inputs, model_path):
    out, forces = tmp_path / "out.csv", tmp_path / "forces.extxyz"
    assert _screen(inputs, out, model_path, "--forces", str(forces), "--dtype", "float64") == 0
    frames = read(forces, ":")
    computed = [r for r in _rows(out) if r["energy_eV"]]
    assert len(frames) == len(computed) == 8
    for frame, row in zip(frames, computed):
        assert frame.info["source"] == row["source"] and str(frame.info["index"]) == row["index"]
        assert frame.get_forces().shape == (len(frame), 3)


def test_missing_model_is_reported(tmp_path, inputs, monkeypatch, capsys):
    monkeypatch.delenv("QDF_MODEL", raising=False)
    monkeypatch.setattr(model_io, "models_dir", lambda: tmp_path)
    rc = cli.main(["screen", str(inputs / "b_one.xyz"), "-o", str(tmp_path / "o.csv"), "--quiet"])
    assert rc == 2
    assert "not present" in capsys.readouterr().err


def test_info_and_export(tmp_path, model_path, capsys):
    assert cli.main(["info", "--model", str(model_path)]) == 0
    text = capsys.readouterr().out
    assert model_io.file_sha256(model_path) in text and '"purpose": "tests"' in text

    best = tmp_path / "best_model"
    torch.save(spk_training_model(), best)
    out = tmp_path / "exported.pt"
    assert cli.main(["export", str(best), str(out)]) == 2
    assert "arbitrary code" in capsys.readouterr().err and not out.exists()
    assert cli.main(["export", str(best), str(out), "--trust-pickle", "--meta", "dataset=qm9"]) == 0
    assert model_io.file_sha256(out) in capsys.readouterr().out
    assert model_io.read_model_file(out)["metadata"]["dataset"] == "qm9"


def test_benchmark_dispatch(monkeypatch):
    seen = []
    fake = types.ModuleType("ase_qdf.benchmarks")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "ase_qdf.benchmarks", fake)
    assert cli.main(["benchmark", "speed", "--n", "3"]) == 0
    assert seen == [["speed", "--n", "3"]]


def test_screen_killed_with_sigkill_and_rerun_loses_and_duplicates_nothing(tmp_path, model_path):
    """A real SIGKILL in the middle of a run, then the same command again."""
    import os
    import signal
    import subprocess
    import time

    from schnetpack_ext.datasets import qm9pack_atoms

    source = tmp_path / "library.xyz"
    write(source, [atoms for _, atoms, _ in qm9pack_atoms("under14", 300)])
    out = tmp_path / "screen.csv"
    cmd = [sys.executable, "-c", "from ase_qdf.cli import main; raise SystemExit(main())",
           "screen", str(source), "-o", str(out), "--model", str(model_path),
           "--batch-size", "4", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if out.exists() and out.read_text().count("\n") > 20:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = out.read_text().count("\n") - 1
    assert 0 < partial < 300, "the kill must land in the middle of the run"

    subprocess.run(cmd, check=True, timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = _rows(out)
    keys = _keys(rows)
    assert len(keys) == len(set(keys)) == 300
    assert sorted(int(r["index"]) for r in rows) == list(range(300))
    assert all(r["energy_eV"] and not r["error"] for r in rows)


def test_screen_lebedev_order_option(tmp_path, model_path, capsys):
    xyz = tmp_path / "in.xyz"
    write(xyz, [molecule("H2O"), molecule("CH4")])
    default, finer = tmp_path / "default.csv", tmp_path / "finer.csv"
    assert cli.main(["screen", str(xyz), "-o", str(default), "--model", str(model_path), "--quiet"]) == 0
    assert cli.main(["screen", str(xyz), "-o", str(finer), "--model", str(model_path), "--quiet",
                     "--lebedev-order", "17"]) == 0
    e_default = [float(r["energy_eV"]) for r in _rows(default)]
    e_finer = [float(r["energy_eV"]) for r in _rows(finer)]
    assert len(e_finer) == 2 and e_finer != e_default
    np.testing.assert_allclose(e_finer, e_default, atol=0.05)
    assert cli.main(["screen", str(xyz), "-o", str(tmp_path / "bad.csv"), "--model", str(model_path),
                     "--quiet", "--lebedev-order", "4"]) == 2
    assert "lebedev_order=4" in capsys.readouterr().err


def test_screen_resume_with_other_settings_is_refused(tmp_path, inputs, model_path, capsys):
    out = tmp_path / "out.csv"
    assert _screen(inputs, out, model_path) == 0
    settings = json.loads((tmp_path / "out.csv.settings.json").read_text())
    assert settings["model_sha256"] == file_sha256(model_path)
    assert settings["dtype"] == "float32" and settings["lebedev_order"] == 11
    full = out.read_text()
    lines = full.splitlines(keepends=True)
    out.write_text("".join(lines[:-2]))  # an unfinished run
    capsys.readouterr()
    # a finer grid, float64 or another model would mix numbers of two models in one file
    assert _screen(inputs, out, model_path, "--lebedev-order", "17") == 2
    assert "lebedev_order 11 -> 17" in capsys.readouterr().err
    assert _screen(inputs, out, model_path, "--dtype", "float64") == 2
    assert "dtype 'float32' -> 'float64'" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    save_qdf_model(tiny_model(seed=3), other)
    assert _screen(inputs, out, other) == 2
    assert "model_sha256" in capsys.readouterr().err
    assert out.read_text() == "".join(lines[:-2])  # nothing was appended
    # the same settings resume as before
    assert _screen(inputs, out, model_path) == 0
    assert out.read_text() == full


def test_export_registers_a_second_model_without_changing_the_default(tmp_path, model_path, monkeypatch, capsys):
    import json
    import shutil

    monkeypatch.setattr(model_io, "models_dir", lambda: tmp_path)
    shutil.copy(model_path, tmp_path / "qdf_qm9.pt")
    model_io.register_model(tmp_path / "qdf_qm9.pt", directory=tmp_path)
    best = tmp_path / "best_model"
    torch.save(spk_training_model(), best)
    second = tmp_path / "qdf_second.pt"
    assert cli.main(["export", str(best), str(second), "--not-default"]) == 2  # needs --register
    assert "--not-default needs --register" in capsys.readouterr().err
    assert cli.main(["export", str(best), str(second), "--trust-pickle", "--register", "qdf_second",
                     "--not-default"]) == 0
    registry = json.loads((tmp_path / "registry.json").read_text())
    assert registry["default"] == "qdf_qm9"
    assert [e["name"] for e in registry["models"]] == ["qdf_qm9", "qdf_second"]
    # qdf info by registered name
    capsys.readouterr()
    assert cli.main(["info", "--model", "qdf_second"]) == 0
    assert model_io.file_sha256(second) in capsys.readouterr().out
