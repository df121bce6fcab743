"""The documentation builds with Sphinx without a single warning (``-W``).

Skipped unless the ``docs`` extra is installed (``pip install -e ".[docs]"``).
Also checks that the README's test command is the one CI runs.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    pytest.importorskip("furo")
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    for page in ("index", "installation", "quickstart", "screening", "training", "hk_task",
                 "limitations", "qdf_model", "benchmarks/core", "api/index", "api/ase_qdf"):
        assert (out / f"{page}.html").is_file(), page
    api = (out / "api" / "ase_qdf.html").read_text()
    for anchor in ("calculator.QDFCalculator", "predict.predict_energies", "convert.from_pymatgen",
                   "model_io.export_spk_model"):
        assert f'id="ase_qdf.{anchor}"' in api, anchor
    assert (out / "_images" / "hk_potential.png").is_file()


def test_readme_test_command_is_what_ci_runs():
    """.ci/run executes the README's "Install and run the tests" command itself, no copy of it."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    section = readme.split("Install and run the tests:", 1)[1]
    command = section.split("```bash", 1)[1].split("```", 1)[0].strip()
    assert command.startswith("python3 -m venv .venv") and command.endswith("python -m pytest -q tests")
    readme_extras = re.findall(r'pip install -e "\.\[([^\]]*)\]" && python -m pytest', readme)
    assert readme_extras and "docs" in readme_extras[0].split(",")
    # CI reads the command from the README and has no install or test step of its own
    assert "Install and run the tests:" in ci and 'bash -euo pipefail -c "$cmd"' in ci
    assert "pip install" not in ci and "pytest" not in ci
    # its extraction step, run on this README, yields exactly the command
    extraction = re.search(r"^cmd=\$\(awk .*?README\.md\)$", ci, re.S | re.M).group(0)
    extracted = subprocess.run(["bash", "-c", extraction + '\nprintf "%s" "$cmd"'],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert extracted == command
