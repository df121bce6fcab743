"""The examples run unattended in smoke mode and fail clearly without a model."""

import runpy
import sys
from pathlib import Path

import pytest

from ase_qdf import model_io

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(script, monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    runpy.run_path(str(script), run_name="__main__")


@pytest.mark.parametrize("name", ["screening.py", "optimize_bfgs.py", "md_short.py", "pymatgen_input.py",
                                  "train_small.py", "density_cube.py"])
def test_example_smoke(name, model_path, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("QDF_SMOKE", "1")
    monkeypatch.setenv("QDF_MODEL", str(model_path))
    monkeypatch.chdir(tmp_path)
    _run(EXAMPLES / name, monkeypatch)
    assert capsys.readouterr().out.strip()


def test_example_without_model_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("QDF_SMOKE", "1")
    monkeypatch.delenv("QDF_MODEL", raising=False)
    monkeypatch.setattr(model_io, "models_dir", lambda: tmp_path)
    with pytest.raises(SystemExit, match="No QDF model available.*--model PATH"):
        _run(EXAMPLES / "optimize_bfgs.py", monkeypatch)
