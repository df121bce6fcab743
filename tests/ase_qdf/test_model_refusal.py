"""Model files that must be refused by default, through every entry point that loads one.

``test_model_io.py`` covers ``load_qdf_model`` on tampered weights, a file SHA-256
mismatch, unknown representation keys, a newer format version and a pickled
``best_model``; here: the remaining config/version/corruption cases and the same
refusals through the calculator, the batch API and the CLI.
"""

import re

import pytest
import torch
from ase.build import molecule
from ase.io import write

from ase_qdf import QDFCalculator, cli, predict_energies
from ase_qdf.model_io import ModelFileError, UntrustedPickleError, load_qdf_model

from .test_model_io import spk_training_model


def _edited(model_path, tmp_path, change, name="bad.pt"):
    payload = torch.load(model_path, weights_only=True)
    change(payload)
    path = tmp_path / name
    torch.save(payload, path)
    return path


def _tamper(p):
    p["state_dict"]["representation.coefficients"][0, 0] += 1e-3


BAD_PAYLOADS = [
    ("tampered_weights", _tamper, ModelFileError, "weights SHA-256 mismatch"),
    ("unknown_top_level_config_key", lambda p: p["config"].update(extra=1), ModelFileError,
     r"unknown key\(s\) \['extra'\]"),
    ("unknown_atomwise_key", lambda p: p["config"]["atomwise"].update(dropout=0.1), ModelFileError,
     r"config\['atomwise'\] has unknown key\(s\) \['dropout'\]"),
    ("unknown_hk_key", lambda p: p["config"]["hk"].update(bogus=1), ModelFileError,
     r"config\['hk'\] has unknown key\(s\) \['bogus'\]"),
    ("format_version_zero", lambda p: p.update(format_version=0), ModelFileError, "invalid format_version 0"),
    ("format_version_string", lambda p: p.update(format_version="1"), ModelFileError,
     "invalid format_version '1'"),
    ("format_version_newer", lambda p: p.update(format_version=99), ModelFileError, "newer than this ase-qdf"),
    ("no_format", lambda p: p.pop("format"), ModelFileError, "not an ase-qdf model file"),
]


@pytest.mark.parametrize("case_id, change, error, match", BAD_PAYLOADS, ids=[c[0] for c in BAD_PAYLOADS])
def test_bad_payloads_are_refused_everywhere(tmp_path, model_path, capsys, case_id, change, error, match):
    path = _edited(model_path, tmp_path, change)
    with pytest.raises(error, match=match):
        load_qdf_model(path)
    with pytest.raises(error, match=match):
        QDFCalculator(model=path, device="cpu")
    with pytest.raises(error, match=match):
        predict_energies([molecule("H2O")], model=path, device="cpu")
    write(tmp_path / "h2o.xyz", molecule("H2O"))
    out = tmp_path / "out.csv"
    assert cli.main(["screen", str(tmp_path / "h2o.xyz"), "-o", str(out), "--model", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the model" in err and re.search(match, err)
    assert not out.exists()  # nothing computed with a refused model
    assert cli.main(["info", "--model", str(path)]) == 1


def test_pickled_best_model_needs_trust_everywhere(tmp_path, capsys):
    best = tmp_path / "best_model"
    torch.save(spk_training_model(), best)
    for load in (lambda: QDFCalculator(model=best, device="cpu"),
                 lambda: predict_energies([molecule("H2O")], model=best, device="cpu")):
        with pytest.raises(UntrustedPickleError, match="--trust-pickle"):
            load()
    write(tmp_path / "h2o.xyz", molecule("H2O"))
    assert cli.main(["screen", str(tmp_path / "h2o.xyz"), "-o", str(tmp_path / "o.csv"),
                     "--model", str(best), "--quiet"]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert cli.main(["info", "--model", str(best)]) == 1
    assert "arbitrary code" in capsys.readouterr().err


def test_code_in_a_pickle_never_runs(tmp_path):
    """A pickle whose unpickling would run code: refused without running it."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"format": "ase-qdf-model", "payload": Evil()}, path)
    with pytest.raises(UntrustedPickleError):
        load_qdf_model(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "case_id, content, match",
    [
        ("empty_file", lambda good: b"", "is empty"),
        ("truncated_file", lambda good: good[: len(good) // 2], "truncated or corrupt"),
        ("binary_garbage", lambda good: bytes(range(256)) * 4, "not an ase-qdf model file"),
        ("text_file", lambda good: b"hello\n", "not an ase-qdf model file"),
    ],
)
def test_corrupt_files_are_model_file_errors_not_pickle_hints(tmp_path, model_path, case_id, content, match):
    path = tmp_path / "m.pt"
    path.write_bytes(content(model_path.read_bytes()))
    with pytest.raises(ModelFileError, match=match) as info:
        load_qdf_model(path)
    assert not isinstance(info.value, UntrustedPickleError)  # not told to --trust-pickle a broken file
    with pytest.raises(ModelFileError, match=match):
        QDFCalculator(model=path, device="cpu")
