"""The ``qdf`` command line: screen molecule files, inspect and export models.

    qdf screen INPUT... -o OUT.csv [--model PATH] [--batch-size N] [--device D]
               [--dtype float32|float64] [--precision full|bf16] [--lebedev-order N]
               [--forces OUT.extxyz] [--shard K/N] [--quiet]
    qdf info [--model PATH]
    qdf density INPUT -o OUT.cube [--spacing S] [--margin M] [--potential] [--index N] [--model PATH]
    qdf density INPUT --line I J -o OUT.png [--extend E] [--potential]   (also writes OUT.csv)
    qdf export BEST_MODEL OUT.pt --trust-pickle [--meta KEY=VALUE ...] [--register NAME [--not-default]]
    qdf average MODEL MODEL... -o OUT.pt --weights W1,W2,... [--meta KEY=VALUE ...] [--register NAME [--not-default]]
    qdf benchmark ...        (dispatches to ase_qdf.benchmarks.main when installed)

The model defaults to ``$QDF_MODEL`` and then to the shipped model. ``qdf screen``
resumes an existing output file, and records the model's SHA-256, dtype, precision and
Lebedev order in ``OUT.csv.settings.json`` so that a resume with other settings is refused.
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib
import json
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

__all__ = ["CSV_COLUMNS", "iter_records", "main", "parse_shard"]

CSV_COLUMNS = ["source", "index", "formula", "n_atoms", "energy_eV", "atomization_energy_eV", "error"]

Record = Tuple[str, int, object, Optional[str]]


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:500]


def _read_file(path: str) -> Iterator[Record]:
    """Molecules of one file as records ``(source, index, atoms | None, error | None)``.

    ASE reads it (any format ASE knows); if ASE cannot read even the first
    molecule, pymatgen's ``Molecule.from_file`` is tried. A read failure after
    ``k`` molecules gives one error record with index ``k``.
    """
    from ase.io import iread

    if os.path.isdir(path):
        yield path, 0, None, f"IsADirectoryError: {path} is a directory (use a glob such as {path}/*.xyz)"
        return
    if not os.path.isfile(path):
        yield path, 0, None, f"FileNotFoundError: no such file: {path}"
        return
    index = 0
    try:
        for atoms in iread(path):
            yield path, index, atoms, None
            index += 1
    except Exception as ase_err:  # noqa: BLE001 - becomes an error row
        if index:
            yield path, index, None, f"read error after {index} molecule(s): {_one_line(ase_err)}"
            return
        try:
            from pymatgen.core import Molecule

            from ase_qdf.convert import from_pymatgen

            atoms = from_pymatgen(Molecule.from_file(path), check=False)
        except Exception as pmg_err:  # noqa: BLE001
            yield path, 0, None, f"unreadable file: ASE: {_one_line(ase_err)}; pymatgen: {_one_line(pmg_err)}"
            return
        yield path, 0, atoms, None
        return
    if index == 0:
        yield path, 0, None, "the file contains no molecules"


def iter_records(inputs: Sequence[str]) -> Iterator[Record]:
    """All molecules of the inputs (files or glob patterns), in a deterministic order.

    Globs are expanded and sorted; a file named twice is read once; a pattern that
    matches nothing yields one error record.
    """
    seen: Set[str] = set()
    for pattern in inputs:
        paths = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not paths:
            yield pattern, 0, None, "no file matches this pattern"
            continue
        for path in paths:
            key = os.path.abspath(path)
            if key in seen:
                continue
            seen.add(key)
            yield from _read_file(path)


def parse_shard(text: Optional[str]) -> Tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) -> (K, N); None -> (1, 1)."""
    if text is None:
        return 1, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like K/N, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def _read_existing(path: str) -> Tuple[Set[Tuple[str, str]], int]:
    """Finished (source, index) keys and number of computed rows of an existing CSV.

    A last line cut off by a kill (no trailing newline) is removed first.
    """
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return set(), 0
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            f.truncate(cut)
    done: Set[Tuple[str, str]] = set()
    n_ok = 0
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return set(), 0
        if header != CSV_COLUMNS:
            raise SystemExit(f"qdf screen: {path} exists with columns {header}, expected {CSV_COLUMNS}")
        for row in reader:
            if len(row) != len(CSV_COLUMNS):
                continue
            done.add((row[0], row[1]))
            n_ok += bool(row[4])
    return done, n_ok


def _screen_settings(engine) -> Dict[str, Any]:
    """What decides the numbers in a screening CSV: rows of one file must share it."""
    from ase_qdf import model_io

    return {
        "model_sha256": engine.model.qdf_sha256,  # the CLI loads models from files only
        "dtype": str(engine.dtype).replace("torch.", ""),
        "precision": engine.precision or "as the model file says",
        "lebedev_order": model_io.lebedev_order_of(engine.model),
    }


def _check_resume_settings(path: str, settings: Dict[str, Any], has_rows: bool) -> Optional[str]:
    """Record the settings beside a new CSV; on resume, the reason they differ (or None).

    The record is ``OUT.csv.settings.json``. Resuming with another model, dtype,
    precision or grid would mix numbers of two models in one file without a trace.
    """
    record = path + ".settings.json"
    if has_rows and os.path.exists(record):
        with open(record) as f:
            old = json.load(f)
        changed = [f"{key} {old.get(key)!r} -> {value!r}" for key, value in settings.items() if old.get(key) != value]
        if changed:
            return (f"{path} was started with other settings ({'; '.join(changed)}); "
                    f"write to a new output file, or delete {path} and {record} to start over")
        return None
    with open(record, "w") as f:
        json.dump(settings, f, indent=1)
        f.write("\n")
    return None


def _screen(args) -> int:
    from tqdm import tqdm

    from ase_qdf.predict import QDFEngine, predict

    k, n = args.shard
    try:
        engine = QDFEngine(args.model, device=args.device, dtype=args.dtype, precision=args.precision,
                           lebedev_order=args.lebedev_order)
    except (FileNotFoundError, ValueError) as err:
        print(f"qdf screen: cannot load the model: {err}", file=sys.stderr)
        return 2
    if os.path.isdir(args.output):
        print(f"qdf screen: the output {args.output} is a directory", file=sys.stderr)
        return 2
    done, n_ok = _read_existing(args.output)
    new_file = not os.path.exists(args.output) or os.path.getsize(args.output) == 0
    try:
        out = open(args.output, "a", newline="")
    except OSError as err:
        print(f"qdf screen: cannot write the output: {_one_line(err)}", file=sys.stderr)
        return 2
    try:  # before anything is appended
        mismatch = _check_resume_settings(args.output, _screen_settings(engine), has_rows=bool(done))
    except (OSError, ValueError) as err:
        mismatch = f"cannot record the settings beside the output: {_one_line(err)}"
    if mismatch:
        out.close()
        print(f"qdf screen: {mismatch}", file=sys.stderr)
        return 2
    writer = csv.writer(out, lineterminator="\n")
    if new_file:
        writer.writerow(CSV_COLUMNS)
        out.flush()
    n_new = n_new_ok = n_skipped = 0
    bar = tqdm(unit="mol", desc="qdf screen", disable=args.quiet, file=sys.stderr, smoothing=0.1)

    def flush(batch: List[Record]):
        nonlocal n_new, n_new_ok
        if not batch:
            return
        readable = [i for i, rec in enumerate(batch) if rec[2] is not None]
        results = predict([batch[i][2] for i in readable], model=engine, batch_size=args.batch_size,
                          forces=args.forces is not None, on_error="record")
        by_pos = dict(zip(readable, results))
        if args.forces is not None:
            from ase.io import write

            frames = []
            for i, res in by_pos.items():
                if res["error"] is None:
                    atoms = batch[i][2].copy()
                    atoms.calc = None
                    atoms.info.update(source=batch[i][0], index=batch[i][1], energy=res["energy"],
                                      atomization_energy=res["atomization_energy"])
                    atoms.arrays["forces"] = res["forces"]
                    frames.append(atoms)
            if frames:
                write(args.forces, frames, format="extxyz", append=True)
        for i, (source, index, atoms, error) in enumerate(batch):
            res = by_pos.get(i)
            formula = n_atoms = energy = atomization = ""
            if atoms is not None:
                formula, n_atoms = atoms.get_chemical_formula(), len(atoms)
            if res is not None:
                error = res["error"]
                if error is None:
                    energy, atomization = f"{res['energy']:.6f}", f"{res['atomization_energy']:.6f}"
                    n_new_ok += 1
            writer.writerow([source, index, formula, n_atoms, energy, atomization, " ".join((error or "").split())])
        out.flush()
        os.fsync(out.fileno())
        n_new += len(batch)
        bar.update(len(batch))

    try:
        batch: List[Record] = []
        for g, rec in enumerate(iter_records(args.inputs)):
            if g % n != k - 1:
                continue
            if (rec[0], str(rec[1])) in done:
                n_skipped += 1
                continue
            batch.append(rec)
            if len(batch) >= args.batch_size:
                flush(batch)
                batch = []
        flush(batch)
    finally:
        bar.close()
        out.close()
    if not args.quiet:
        print(f"qdf screen: {n_new} new row(s) ({n_new_ok} computed, {n_new - n_new_ok} with errors), "
              f"{n_skipped} already done, output {args.output}", file=sys.stderr)
    return 0 if (n_ok + n_new_ok) > 0 else 1


def _info(args) -> int:
    from ase_qdf.average import QDFAverage, model_cutoff
    from ase_qdf import model_io

    path = args.model
    try:
        if path is None:
            entry = model_io.registry_entry()
            print(f"shipped model: {entry['name']} ({model_io.models_dir() / entry['file']})")
            print(f"registered sha256: {entry.get('sha256')}")
            model = model_io.load_default_model()
        else:
            model = model_io.load_model_file_or_name(path)
    except (FileNotFoundError, ValueError) as err:
        print(f"qdf info: {err}", file=sys.stderr)
        return 1
    card = model_io.shipped_model_card(model)
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "path": model.qdf_path,
        "sha256": model.qdf_sha256,
        "format_version": model.qdf_format_version,
        "parameters": n_params,
        "cutoff_angstrom": model_cutoff(model),
        "config": model.average_config if isinstance(model, QDFAverage) else model.qdf_config,
        "metadata": model.qdf_metadata,
    }, indent=2))
    if card:
        print()
        print(card)
    return 0


def _export(args) -> int:
    from ase_qdf import model_io

    meta = _written_file_options(args, "export")
    if meta is None:
        return 2
    try:
        sha = model_io.export_spk_model(args.best_model, args.output, trust_pickle=args.trust_pickle,
                                        metadata=meta, lebedev_order=args.lebedev_order)
    except model_io.UntrustedPickleError as err:
        print(f"qdf export: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:
        print(f"qdf export: {err}", file=sys.stderr)
        return 1
    return _report_written(args, sha)


def _written_file_options(args, command: str) -> Optional[Dict[str, str]]:
    """The ``--meta KEY=VALUE`` items of ``qdf export``/``average`` as a dict, after checking
    ``--not-default``; None (after a message) if the options are unusable."""
    if args.not_default and not args.register:
        print(f"qdf {command}: --not-default needs --register NAME", file=sys.stderr)
        return None
    meta = {}
    for item in args.meta or []:
        if "=" not in item:
            print(f"qdf {command}: --meta needs KEY=VALUE, got {item!r}", file=sys.stderr)
            return None
        key, value = item.split("=", 1)
        meta[key] = value
    return meta


def _report_written(args, sha: str) -> int:
    """Print the written model file and its SHA-256; register it if ``--register`` says so."""
    from ase_qdf import model_io

    print(f"wrote {args.output}\nsha256 {sha}")
    if args.register:
        entry = model_io.register_model(args.output, name=args.register, make_default=not args.not_default)
        print(f"registered {entry}")
    return 0


def _average(args) -> int:
    from ase_qdf import model_io

    meta = _written_file_options(args, "average")
    if meta is None:
        return 2
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        print(f"qdf average: --weights takes numbers separated by commas, got {args.weights!r}", file=sys.stderr)
        return 2
    try:
        members = [model_io.load_model_file_or_name(path) for path in args.models]
        # each member file's hash, so that the average names exactly what it averages
        meta = {"members": [{"file": os.path.basename(m.qdf_path), "sha256": m.qdf_sha256} for m in members],
                **meta}
        sha = model_io.save_qdf_average(members, weights, args.output, metadata=meta)
    except (FileNotFoundError, ValueError) as err:
        print(f"qdf average: {err}", file=sys.stderr)
        return 1
    return _report_written(args, sha)


def _density(args) -> int:
    """Density (or HK potential) of one molecule as a cube file or a line profile."""
    import numpy as np
    from ase.io import read

    from ase_qdf import density
    from ase_qdf.validation import InvalidMoleculeError

    kind = "hk_potential" if args.potential else "density"
    try:
        atoms = read(args.input, index=args.index)
    except Exception as err:  # noqa: BLE001 - any reader failure is reported the same way
        print(f"qdf density: cannot read molecule {args.index} of {args.input}: {_one_line(err)}", file=sys.stderr)
        return 1
    if args.line is not None:
        i, j = args.line
        if not (0 <= i < len(atoms) and 0 <= j < len(atoms)) or i == j:
            print(f"qdf density: --line needs two different atom indices in 0..{len(atoms) - 1}, got {i} {j}",
                  file=sys.stderr)
            return 2
    try:
        fields = density.molecule_fields(atoms, model=args.model, device=args.device)
    except InvalidMoleculeError as err:
        print(f"qdf density: invalid input: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:
        print(f"qdf density: cannot load the model: {err}", file=sys.stderr)
        return 2
    except NotImplementedError as err:
        print(f"qdf density: {err}", file=sys.stderr)
        return 2
    if args.line is None:
        grid = density.regular_grid(atoms, args.spacing, args.margin)
        data = density.field_on_grid(fields, grid, kind)
        density.write_cube(args.output, atoms, data, grid, comment=f"QDF {kind} ({atoms.get_chemical_formula()})")
        print(f"wrote {args.output} ({kind}, grid {grid.shape[0]}x{grid.shape[1]}x{grid.shape[2]})")
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i, j = args.line
    positions = atoms.get_positions()
    s, points, values = density.line_profile(fields, positions[i], positions[j], n_points=args.n_points,
                                             extend=args.extend, kind=kind)
    label = "electron density (e/Å³)" if kind == "density" else "HK potential"
    csv_path = os.path.splitext(args.output)[0] + ".csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["s_angstrom", "x", "y", "z", kind])
        for sk, p, v in zip(s, points, values):
            writer.writerow([f"{sk:.6f}", f"{p[0]:.6f}", f"{p[1]:.6f}", f"{p[2]:.6f}", f"{v:.8e}"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(s, values)
    length = float(np.linalg.norm(positions[j] - positions[i]))
    for x, k in ((0.0, i), (length, j)):
        ax.axvline(x, color="0.6", lw=0.8, ls="--")
        ax.annotate(f"{atoms[k].symbol}{k}", (x, 1.0), xycoords=("data", "axes fraction"),
                    ha="center", va="bottom")
    ax.set_xlabel(f"distance from atom {i} along {i}→{j} (Å)")
    ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    plt.close(fig)
    print(f"wrote {args.output} and {csv_path}")
    return 0


def _benchmark(argv: Sequence[str]) -> int:
    try:
        module = importlib.import_module("ase_qdf.benchmarks")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("ase_qdf.benchmarks"):
            print("qdf benchmark: ase_qdf.benchmarks is not installed", file=sys.stderr)
            return 2
        raise
    result = module.main(list(argv))
    # benchmarks return their results (dicts, paths) or an exit status
    return result if isinstance(result, int) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qdf", description="Quantum Deep Field (QDF) energies for molecules.")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("screen", help="predict energies for every molecule of the input files into a CSV")
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="molecule files or glob patterns (any ASE format)")
    s.add_argument("-o", "--output", required=True, metavar="OUT.csv",
                   help="CSV output; an existing file is resumed (finished rows are skipped)")
    s.add_argument("--model", help="ase-qdf model file or the name of a shipped model, e.g. qdf_qm9 (default: $QDF_MODEL, then the shipped default model)")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    s.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    s.add_argument("--precision", choices=["full", "bf16"], default=None,
                   help="energy functional in bfloat16 (faster, see docs/benchmarks/speed.md) or full "
                        "precision (default: as the model file says)")
    s.add_argument("--lebedev-order", type=int, default=None, metavar="N",
                   help="evaluate on a Lebedev grid of this angular order (default: the model's own, 17 for "
                        "the shipped model; 11, its training grid, is about 2x faster and 3x more "
                        "orientation dependent)")
    s.add_argument("--forces", metavar="OUT.extxyz", help="also write structures with energies and forces")
    s.add_argument("--shard", type=parse_shard, default=(1, 1), metavar="K/N",
                   help="process only records with global number %% N == K-1 (1 <= K <= N)")
    s.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    i = sub.add_parser("info", help="show the model's config, metadata and SHA-256")
    i.add_argument("--model", help="ase-qdf model file or the name of a shipped model, e.g. qdf_qm9 (default: $QDF_MODEL, then the shipped default model)")

    e = sub.add_parser("export", help="convert a SchNetPack best_model/checkpoint (pickle) to an ase-qdf file")
    e.add_argument("best_model")
    e.add_argument("output", metavar="OUT.pt")
    e.add_argument("--trust-pickle", action="store_true",
                   help="required: unpickling executes code; only for files from your own training")
    e.add_argument("--meta", action="append", metavar="KEY=VALUE", help="metadata to store (repeatable)")
    e.add_argument("--lebedev-order", type=int, metavar="N",
                   help="evaluate on a Lebedev grid of this angular order (default: as trained)")
    e.add_argument("--register", metavar="NAME",
                   help="record NAME, file and SHA-256 in registry.json (OUT.pt must be in ase_qdf/models)")
    e.add_argument("--not-default", action="store_true",
                   help="with --register: keep the current default model (load this one by NAME)")

    a = sub.add_parser("average", help="write the weighted average of several model files as one model file")
    a.add_argument("models", nargs="+", metavar="MODEL",
                   help="ase-qdf model files or names of shipped models (at least two)")
    a.add_argument("-o", "--output", required=True, metavar="OUT.pt")
    a.add_argument("--weights", required=True, metavar="W1,W2,...",
                   help="one weight per model, summing to 1 (choose them on validation: qdf benchmark blend)")
    a.add_argument("--meta", action="append", metavar="KEY=VALUE", help="metadata to store (repeatable)")
    a.add_argument("--register", metavar="NAME",
                   help="record NAME, file and SHA-256 in registry.json (OUT.pt must be in ase_qdf/models)")
    a.add_argument("--not-default", action="store_true",
                   help="with --register: keep the current default model (load this one by NAME)")

    d = sub.add_parser("density", help="the model's electron density (or HK potential) as a cube file or a line plot")
    d.add_argument("input", metavar="INPUT", help="molecule file (any ASE format)")
    d.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="OUT.cube (Gaussian cube), or with --line a PNG plot (a CSV is written next to it)")
    d.add_argument("--index", type=int, default=0, help="which molecule of a multi-molecule file (default 0)")
    d.add_argument("--spacing", type=float, default=0.2, help="grid spacing in Å (default 0.2)")
    d.add_argument("--margin", type=float, default=3.0, help="space around the atoms in Å (default 3.0)")
    d.add_argument("--potential", action="store_true", help="the HK-predicted potential instead of the density")
    d.add_argument("--line", type=int, nargs=2, metavar=("I", "J"),
                   help="profile along the line through atoms I and J (0-based) instead of a cube")
    d.add_argument("--extend", type=float, default=1.0, help="with --line: continue this far beyond I and J (Å)")
    d.add_argument("--n-points", type=int, default=200, help="with --line: number of samples")
    d.add_argument("--model", help="ase-qdf model file or the name of a shipped model, e.g. qdf_qm9 (default: $QDF_MODEL, then the shipped default model)")
    d.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")

    sub.add_parser("benchmark", help="benchmarks (ase_qdf.benchmarks), arguments passed through", add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "benchmark":
        return _benchmark(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "screen":
        if args.batch_size < 1:
            print("qdf screen: --batch-size must be >= 1", file=sys.stderr)
            return 2
        return _screen(args)
    if args.command == "info":
        return _info(args)
    if args.command == "export":
        return _export(args)
    if args.command == "average":
        return _average(args)
    if args.command == "density":
        if not (args.spacing > 0 and args.margin >= 0 and args.extend >= 0 and args.n_points >= 2):
            print("qdf density: need --spacing > 0, --margin >= 0, --extend >= 0, --n-points >= 2", file=sys.stderr)
            return 2
        return _density(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
