"""Size extrapolation: accuracy on the ``under14`` splits and on the larger ``over15`` molecules.

Evaluates trained models (ase-qdf files or pickled SchNetPack ``best_model`` files) on
the ``under14`` test split (optionally also validation) and on all 116,041 ``over15``
molecules, overall and per number of atoms, against U0 from ``qm9pack``. Each model's
result goes to ``OUT_DIR/extrapolation_<label>.json`` (with its predictions in a
``.npz``); then the table ``extrapolation.md``, the paper-style plot
``extrapolation_by_size.png`` (MAE against the number of atoms, training range shaded)
and ``extrapolation_parity.png`` are written from all the JSON files in ``OUT_DIR``::

    qdf benchmark extrapolation --model qdf=ase_qdf/models/qdf_qm9.pt \\
        --model schnet=runs/schnet/best_model --trust-pickle --over15 -1
    qdf benchmark extrapolation --report-only     # redraw from the JSON files

The plots draw at most ``MAX_PLOTTED`` models, so that they stay readable: all of
them when they fit, else the ``--plot`` labels, else the ``HEADLINE`` models (the
folder ``docs/benchmarks`` holds every training phase and ablation). When not every
model is plotted, ``extrapolation.md`` has a "Headline" table of the plotted ones and
one of every record; otherwise one table.

``--over15 N`` evaluates N random ``over15`` molecules (seed 1729) instead of all (-1).
``--orientation random`` turns every molecule about its centre of mass by a random
rotation (seed 2718) first. Invariant models (SchNet, PaiNN) give the same errors either
way; QDF's grids are fixed in space, and a QDF trained on molecules as QM9 stores them
can lean on that orientation, which users' molecules do not share.
The original QDF's published numbers are quoted as a row of the table.

References:
    M. Tsubaki, T. Mizoguchi, Quantum deep field: data-driven wave function, electron
    density generation, and atomization energy prediction and extrapolation with machine
    learning, Phys. Rev. Lett. 125, 206401 (2020).
"""

import argparse
import json
import math
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from ase import units

from .models import spk_energies
from .rotation import rotated_copies

__all__ = ["errors_by_size", "pooled_by_size", "growth_with_size", "load_molecules", "model_energy_function",
           "evaluate_model", "write_record", "read_predictions",
           "plotted", "write_report", "main"]

KCAL_PER_MOL = units.kcal / units.mol  # eV

#: most models drawn in the plots; a folder with more draws a selection (see ``plotted``)
MAX_PLOTTED = 8

#: the models plotted from a folder with more than ``MAX_PLOTTED`` records and no ``--plot``:
#: the shipped model, the QDF average, the hybrid with PaiNN, its three PaiNN members averaged
#: (what PaiNN alone reaches in the same ensemble), one PaiNN member, the paper mode and the
#: two SchNetPack baselines trained on the H200
HEADLINE = ("qdf_qm9_shipped", "qdf_qm9_average", "qdf_qm9_hybrid", "painn_qm9_trio",
            "painn_qm9_member", "qdf_paper_mode_h200_5min", "painn_h200_9min", "schnet_h200_9min")

#: the smallest and the largest molecules compared by :func:`growth_with_size`
GROWTH_SIZES = ((15,), (27, 28, 29))

#: resamples and seed of the bootstrap interval of :func:`growth_with_size`
GROWTH_BOOTSTRAP, GROWTH_SEED = 2000, 1729

#: seed of the random orientations of ``--orientation random``
ORIENTATION_SEED = 2718

#: the original QDF (spec §3); per-size values read off the paper's figure
ORIGINAL_QDF = {
    "label": "original QDF (quoted)",
    "budget": "2000 epochs, ~21 h on a GPU",
    "under14_test_mae_eV": 0.0575,
    "over15_mae_eV": 0.1288,
    "over15_note": "3,000 random over15 molecules",
    "mae_at_15_eV": 2.0 * KCAL_PER_MOL,
    "mae_27_29_eV": 4.5 * KCAL_PER_MOL,
}


def errors_by_size(predicted: np.ndarray, reference: np.ndarray, n_atoms: np.ndarray) -> Dict[str, object]:
    """MAE, RMSE and mean signed error (eV) overall and per number of atoms.

    The mean signed error (predicted minus reference) separates a systematic drift
    with size (e.g. over-binding of the largest, hydrogen-rich molecules) from
    scatter; a negative value means the model predicts too low an energy.

    Args:
        predicted: predicted energies (eV).
        reference: reference energies (eV).
        n_atoms: number of atoms of every molecule.
    """
    error = np.asarray(predicted, dtype=float) - np.asarray(reference, dtype=float)
    n_atoms = np.asarray(n_atoms)
    by_size = {int(n): error[n_atoms == n] for n in np.unique(n_atoms)}
    return {
        "n": int(len(error)),
        "mae_eV": float(np.abs(error).mean()),
        "rmse_eV": float(np.sqrt((error**2).mean())),
        "mean_signed_error_eV": float(error.mean()),
        "by_n_atoms": {
            n: {"n": int(v.size), "mae_eV": float(np.abs(v).mean()), "rmse_eV": float(np.sqrt(np.mean(np.square(v)))),
                "mean_signed_error_eV": float(np.mean(v))}
            for n, v in sorted(by_size.items())
        },
    }


def load_molecules(split: str, over15: int = -1):
    """(names, molecules, U0 in eV) of an ``under14`` split or of ``over15``.

    Args:
        split: ``"test"``, ``"val"`` or ``"train"`` (``under14``), or ``"over15"``.
        over15: for ``"over15"``: -1 for all, else that many at random (seed 1729).
    """
    from schnetpack_ext.datasets import SUBSET_SIZES, QM9Pack, qm9pack_atoms

    if split == "over15":
        indices = None
        if over15 >= 0:
            indices = sorted(np.random.default_rng(1729).choice(SUBSET_SIZES["over15"], over15, replace=False))
        pool = list(qm9pack_atoms("over15", indices=indices))
    else:
        data = QM9Pack(subset="under14", batch_size=1)
        data.prepare_data()
        pool = list(qm9pack_atoms("under14", indices=np.load(data.split_file)[f"{split}_idx"]))
    return [p[0] for p in pool], [p[1] for p in pool], np.array([p[2] for p in pool])


def model_energy_function(path: str, trust_pickle: bool = False, cutoff: Optional[float] = None,
                          batch_size: int = 64, precision: Optional[str] = None) -> Callable[[Sequence], np.ndarray]:
    """A function molecules -> total energies (eV) for an ase-qdf file or a SchNetPack model.

    ase-qdf files (``*.pt``) go through :func:`ase_qdf.predict_energies` (the
    calculator's code), with ``precision`` as in :class:`ase_qdf.predict.QDFEngine`;
    anything else is taken for a pickled SchNetPack ``best_model`` and needs
    ``trust_pickle`` (unpickling runs code).
    """
    from ase_qdf import model_io
    from ase_qdf.predict import QDFEngine, predict_energies

    if str(path).endswith(".pt"):
        engine = QDFEngine(path, precision=precision)
        return lambda molecules: predict_energies(molecules, model=engine, batch_size=batch_size)
    if precision is not None:
        raise ValueError("precision applies to ase-qdf model files only")
    if not trust_pickle:
        raise model_io.UntrustedPickleError(
            f"{path} is a pickle (SchNetPack best_model): pass --trust-pickle for your own files only")
    model = torch.load(path, map_location="cpu", weights_only=False)
    if cutoff is None:
        cutoff = float(getattr(model.representation, "cutoff", None) or model.representation.cutoff_fn.cutoff)
    return lambda molecules: spk_energies(model, molecules, cutoff, batch_size=batch_size)


def evaluate_model(label: str, path: str, out_dir: Path, splits: Sequence[str] = ("test",), over15: int = -1,
                   trust_pickle: bool = False, budget: str = "", cutoff: Optional[float] = None,
                   precision: Optional[str] = None, orientation: str = "stored") -> Dict:
    """Evaluate one model and write ``extrapolation_<label>.json`` and ``.npz``.

    ``orientation``: ``"stored"`` (the molecules as QM9 stores them) or ``"random"``
    (each turned by a random rotation, seed :data:`ORIENTATION_SEED`).
    """
    if orientation not in ("stored", "random"):
        raise ValueError(f"orientation must be 'stored' or 'random', got {orientation!r}")
    energies = model_energy_function(path, trust_pickle=trust_pickle, cutoff=cutoff, precision=precision)
    result = {"label": label, "model": str(path), "budget": budget, "precision": precision or "model default",
              "orientation": orientation, "splits": {}}
    arrays = {}
    for split in [*splits, "over15"] if over15 != 0 else list(splits):
        names, molecules, reference = load_molecules(split, over15)
        if orientation == "random":
            molecules = rotated_copies(molecules, 1, ORIENTATION_SEED)
        start = time.perf_counter()
        predicted = energies(molecules)
        seconds = time.perf_counter() - start
        n_atoms = np.array([len(a) for a in molecules])
        key = "over15" if split == "over15" else f"under14_{split}"
        result["splits"][key] = dict(errors_by_size(predicted, reference, n_atoms), seconds=seconds,
                                     molecules_per_s=len(molecules) / seconds)
        arrays[f"{key}_predicted"], arrays[f"{key}_reference"], arrays[f"{key}_n_atoms"] = predicted, reference, n_atoms
        print(f"{label} {key}: MAE {result['splits'][key]['mae_eV']:.4f} eV over {len(molecules)} molecules "
              f"({seconds:.0f} s)", flush=True)
    write_record(out_dir, result, arrays)
    return result


def write_record(out_dir: Path, result: Dict, arrays: Dict[str, np.ndarray]) -> None:
    """Write ``extrapolation_<label>.json`` (the result) and ``.npz`` (its predictions).

    Args:
        out_dir: the folder of the records.
        result: the result, with its ``label``.
        arrays: ``<split>_predicted``, ``<split>_reference`` and ``<split>_n_atoms`` per split.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"extrapolation_{result['label']}.json").write_text(json.dumps(result, indent=1) + "\n")
    np.savez_compressed(out_dir / f"extrapolation_{result['label']}.npz", **arrays)


def read_predictions(out_dir: Path, label: str) -> Dict[str, np.ndarray]:
    """The arrays of ``extrapolation_<label>.npz`` (see :func:`write_record`).

    Raises:
        FileNotFoundError: no such record in ``out_dir``.
    """
    path = Path(out_dir) / f"extrapolation_{label}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    with np.load(path) as saved:
        return dict(saved)


def pooled_by_size(by_size: Dict, sizes: Sequence[int], key: str = "mae_eV") -> float:
    """Size-weighted mean of ``key`` over the rows of ``sizes`` (NaN if absent).

    Args:
        by_size: a result's ``by_n_atoms`` table (as :func:`errors_by_size` writes it).
        sizes: the numbers of atoms to pool.
        key: the column, e.g. ``"mae_eV"`` or ``"mean_signed_error_eV"``.
    """
    # keys are strings: results are read back from their JSON files
    rows = [by_size[str(n)] for n in sizes if str(n) in by_size and key in by_size[str(n)]]
    if not rows:
        return float("nan")
    return sum(r[key] * r["n"] for r in rows) / sum(r["n"] for r in rows)


def growth_with_size(errors: np.ndarray, n_atoms: np.ndarray, small: Sequence[int] = GROWTH_SIZES[0],
                     large: Sequence[int] = GROWTH_SIZES[1], resamples: int = GROWTH_BOOTSTRAP,
                     seed: int = GROWTH_SEED) -> Dict[str, object]:
    """How much the MAE grows from the ``small`` to the ``large`` molecules, with a 95 % interval.

    The issue's question is whether the error grows less than linearly with size, read
    here as less than in proportion to the number of atoms (an error a + bN with a > 0
    also passes). An error proportional to the number of atoms gives ``ratio ==
    size_ratio`` (the mean size of the large molecules over that of the small ones);
    ``verdict`` is ``"yes"`` (sub-linear; ``sublinear`` true) only when the whole
    percentile-bootstrap interval of the ratio lies below ``size_ratio``, ``"no"`` when it
    lies on or above it, else ``"undecided"``.
    The few hundred 27–29-atom molecules make a single ratio noisy, hence the interval;
    the two groups are resampled independently.

    Args:
        errors: predicted minus reference energies (eV) of the ``over15`` molecules.
        n_atoms: their numbers of atoms.
        small: the sizes of the small group (default 15 atoms).
        large: the sizes of the large group (default 27–29 atoms).
        resamples: bootstrap resamples.
        seed: seed of the resampling.

    Raises:
        ValueError: a group without molecules.
    """
    absolute, n_atoms = np.abs(np.asarray(errors, dtype=float)), np.asarray(n_atoms)
    masks = [np.isin(n_atoms, sizes) for sizes in (small, large)]
    for sizes, mask in zip((small, large), masks):
        if not mask.any():
            raise ValueError(f"no molecules with {', '.join(map(str, sizes))} atoms")
    groups = [absolute[mask] for mask in masks]
    rng = np.random.default_rng(seed)

    def resampled_means(group: np.ndarray) -> np.ndarray:
        # in blocks, so that a group of 20,000 molecules does not draw 40 million indices at once
        block = max(1, 2_000_000 // group.size)
        return np.concatenate([group[rng.integers(0, group.size, (min(block, resamples - k), group.size))].mean(1)
                               for k in range(0, resamples, block)])

    ratios = resampled_means(groups[1]) / resampled_means(groups[0])
    low, high = np.percentile(ratios, [2.5, 97.5])
    size_ratio = float(n_atoms[masks[1]].mean() / n_atoms[masks[0]].mean())
    verdict = "yes" if high < size_ratio else ("no" if low >= size_ratio else "undecided")
    return {"mae_small_eV": float(groups[0].mean()), "mae_large_eV": float(groups[1].mean()),
            "n_small": int(groups[0].size), "n_large": int(groups[1].size),
            "ratio": float(groups[1].mean() / groups[0].mean()), "ratio_low": float(low), "ratio_high": float(high),
            "size_ratio": size_ratio, "verdict": verdict, "sublinear": verdict == "yes",
            "resamples": int(ratios.size)}


def _growth_section(results: List[Dict], out_dir: Path) -> List[str]:
    """Rows of the growth table for the results whose ``over15`` predictions are saved."""
    rows = []
    for r in results:
        try:
            data = read_predictions(out_dir, r["label"])
        except FileNotFoundError:
            continue
        if "over15_predicted" not in data:
            continue
        n_atoms = data["over15_n_atoms"]
        if not all(np.isin(n_atoms, sizes).any() for sizes in GROWTH_SIZES):
            continue  # a subset without molecules of one of the two groups
        growth = growth_with_size(data["over15_predicted"] - data["over15_reference"], n_atoms)
        rows.append(f"| {r['label']} | {growth['mae_small_eV']:.4f} ({growth['n_small']}) | "
                    f"{growth['mae_large_eV']:.4f} ({growth['n_large']}) | {growth['ratio']:.2f} | "
                    f"{growth['ratio_low']:.2f}–{growth['ratio_high']:.2f} | {growth['size_ratio']:.2f} | {growth['verdict']} |")
    if not rows:
        return []
    return ["## Growth with size", "",
            "MAE at 27–29 atoms over MAE at 15 atoms, with a 95 % bootstrap interval "
            f"({GROWTH_BOOTSTRAP} resamples of each group), against the ratio of their mean sizes: an error "
            "proportional to the number of atoms has a ratio equal to the size ratio. Sub-linear (growing less than "
            "in proportion to the number of atoms): \"yes\" when the "
            "whole interval lies below the size ratio, \"no\" when it lies on or above it, else \"undecided\" "
            "(`growth_with_size`). The original QDF, read off its figure: "
            f"{ORIGINAL_QDF['mae_27_29_eV'] / ORIGINAL_QDF['mae_at_15_eV']:.2f} (2.0 to 4.5 kcal/mol).", "",
            "| model | MAE at 15 atoms (n) | MAE at 27–29 atoms (n) | ratio | 95 % interval | size ratio | sub-linear |",
            "|---|---|---|---|---|---|---|", *rows, ""]


def _summary(result: Dict) -> Tuple[str, ...]:
    test = result["splits"].get("under14_test", {})
    over = result["splits"].get("over15", {})
    by_size = over.get("by_n_atoms", {})
    fmt = lambda x: "–" if x is None or x != x else f"{x:.4f}"  # noqa: E731
    return (result["label"], result.get("budget", ""), result.get("orientation", "stored"), fmt(test.get("mae_eV")), fmt(over.get("mae_eV")),
            fmt(over.get("rmse_eV")), str(over.get("n", "–")), fmt(pooled_by_size(by_size, [15])),
            fmt(pooled_by_size(by_size, [27, 28, 29])),
            fmt(pooled_by_size(by_size, [27, 28, 29], "mean_signed_error_eV")))


def plotted(results: List[Dict], labels: Optional[Sequence[str]] = None) -> List[Dict]:
    """The results drawn in the plots.

    Args:
        results: every result of the folder (as in the table).
        labels: the models to draw; ``None``: all when there are at most
            ``MAX_PLOTTED``, else those of ``HEADLINE`` present (the first
            ``MAX_PLOTTED`` if none is).

    Raises:
        ValueError: a label with no result in the folder, or more than ``MAX_PLOTTED``.
    """
    by_label = {r["label"]: r for r in results}
    if labels:
        missing = [label for label in labels if label not in by_label]
        if missing:
            raise ValueError(f"no extrapolation_<label>.json for --plot {', '.join(missing)}")
        if len(labels) > MAX_PLOTTED:
            raise ValueError(f"at most {MAX_PLOTTED} models fit on the plots, not {len(labels)}")
        return [by_label[label] for label in labels]
    if len(results) <= MAX_PLOTTED:
        return list(results)
    return [by_label[label] for label in HEADLINE if label in by_label] or list(results[:MAX_PLOTTED])


def write_report(out_dir: Path, plot: Optional[Sequence[str]] = None) -> Path:
    """Tables of the ``extrapolation_*.json`` in ``out_dir`` (the plotted ones, every one), and plots.

    Args:
        out_dir: the folder of the results.
        plot: labels of the models to plot (see :func:`plotted`).
    """
    results = [json.loads(p.read_text()) for p in sorted(out_dir.glob("extrapolation_*.json"))]
    drawn = plotted(results, plot)
    o = ORIGINAL_QDF
    rows = [(o["label"], o["budget"], "stored", f"{o['under14_test_mae_eV']:.4f}", f"{o['over15_mae_eV']:.4f}", "–",
             "3000", f"≈{o['mae_at_15_eV']:.3f}", f"≈{o['mae_27_29_eV']:.3f}", "–")]
    header = ["model", "training budget", "orientation", "under14 test MAE", "over15 MAE", "over15 RMSE", "over15 n",
              "MAE at 15 atoms", "MAE at 27–29 atoms", "mean signed error at 27–29 atoms"]

    def table(selection: List[Dict]) -> List[str]:
        return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                + ["| " + " | ".join(r) + " |" for r in rows + [_summary(r) for r in selection]])

    lines = ["# Size extrapolation on QM9", "",
             "Trained on `under14` (≤ 14 atoms) only; errors in eV against QM9 U0. Written by "
             "`qdf benchmark extrapolation`; the original's per-size values are read off the paper's figure. "
             "Mean signed error = predicted − reference (negative: the model over-binds); its drift with size "
             "is the right panel of the plot. Orientation: molecules as QM9 stores them, or each turned by a "
             "random rotation (`--orientation random`).", ""]
    if drawn and len(drawn) < len(results):
        # a folder that keeps every training phase and ablation: the plotted models
        # first, in a table short enough to read, then every record
        names = ", ".join(f"`{r['label']}`" for r in drawn)
        lines += ["## Headline", "", *table(drawn), "", f"Plotted ({len(drawn)} of {len(results)}): {names}.", "",
                  "![MAE against size](extrapolation_by_size.png)", "", "![parity](extrapolation_parity.png)", "",
                  *_growth_section(drawn, out_dir), "## Every record", "", *table(results), ""]
    else:
        lines += [*table(results), ""]
        if drawn:
            lines += ["![MAE against size](extrapolation_by_size.png)", "", "![parity](extrapolation_parity.png)", ""]
        lines += _growth_section(results, out_dir)
    path = out_dir / "extrapolation.md"
    path.write_text("\n".join(lines))
    if drawn:
        _plots(drawn, out_dir)
    return path


def _plots(results: List[Dict], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_bias) = plt.subplots(1, 2, figsize=(11, 5.6))
    for a in (ax, ax_bias):
        a.axvspan(0, 14.5, color="0.9", label="training range (≤ 14 atoms)" if a is ax else None)
    # tab10 repeats after ten lines: the line style changes with each repeat, so that
    # every model in the legend is told apart
    styles = ["o-", "s--", "^:", "D-."]
    for k, r in enumerate(results):
        rows = {}
        for split in ("under14_test", "over15"):
            rows.update({int(n): v for n, v in r["splits"].get(split, {}).get("by_n_atoms", {}).items()})
        sizes = sorted(rows)
        look = dict(color=f"C{k % 10}", ms=3)
        style = styles[(k // 10) % len(styles)]
        ax.plot(sizes, [rows[n]["mae_eV"] / KCAL_PER_MOL for n in sizes], style, label=r["label"], **look)
        signed = [n for n in sizes if "mean_signed_error_eV" in rows[n]]
        ax_bias.plot(signed, [rows[n]["mean_signed_error_eV"] / KCAL_PER_MOL for n in signed], style, **look)
    ax.plot([15, 28], [2.0, 4.5], "k--", label="original QDF (paper figure, approx.)")
    ax.set_xlabel("number of atoms")
    ax.set_ylabel("MAE (kcal/mol)")
    # logarithmic: models that differ tenfold (an under-trained run beside a converged
    # one) stay readable on one plot, and equal ratios look equal
    ax.set_yscale("log")
    ax_bias.axhline(0, color="k", lw=0.5)
    ax_bias.set_xlabel("number of atoms")
    ax_bias.set_ylabel("mean signed error, predicted − reference (kcal/mol)")
    for a in (ax, ax_bias):
        a.set_xlim(5, 30)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, ncol=3, loc="lower center")
    fig.tight_layout(rect=(0, 0.02 + 0.045 * math.ceil((len(results) + 2) / 3), 1, 1))  # room for the legend
    fig.savefig(out_dir / "extrapolation_by_size.png", dpi=120)
    plt.close(fig)

    n_cols = min(len(results), 4)
    n_rows = math.ceil(len(results) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 3.2 * n_rows), squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, results):
        try:
            data = read_predictions(out_dir, r["label"])
        except FileNotFoundError:
            continue
        for split, colour in (("under14_test", "C0"), ("over15", "C1")):
            if f"{split}_predicted" not in data:
                continue
            n = data[f"{split}_n_atoms"]
            # atomization-like axes: per-atom offsets would hide the errors at this scale
            ref, pred = data[f"{split}_reference"] / n, data[f"{split}_predicted"] / n
            ax.scatter(ref, pred - ref, s=1, alpha=0.3, color=colour, label=split)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(r["label"], fontsize=9)
        ax.set_xlabel("U0 per atom (eV)")
        ax.set_ylabel("error per atom (eV)")
        ax.legend(fontsize=7, markerscale=5)
    fig.tight_layout()
    fig.savefig(out_dir / "extrapolation_parity.png", dpi=120)
    plt.close(fig)


def main(argv: List[str] = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=PATH",
                        help="a model to evaluate (repeatable)")
    parser.add_argument("--budget", action="append", default=[], metavar="LABEL=TEXT",
                        help="training budget of a model, for the table (repeatable)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow pickled SchNetPack best_model files (unpickling runs code: own files only)")
    parser.add_argument("--splits", default="test", help="under14 splits, comma-separated (test,val)")
    parser.add_argument("--over15", type=int, default=-1, help="over15 molecules: -1 all, N random, 0 none")
    parser.add_argument("--cutoff", type=float, help="neighbour cutoff for SchNetPack models (default: the model's)")
    parser.add_argument("--precision", choices=("full", "bf16"),
                        help="ase-qdf models: float32 throughout, or bf16 energy functional (default: the model's)")
    parser.add_argument("--orientation", choices=("stored", "random"), default="stored",
                        help=f"molecules as QM9 stores them, or each randomly rotated (seed {ORIENTATION_SEED})")
    parser.add_argument("--out-dir", default="docs/benchmarks", type=Path)
    parser.add_argument("--report-only", action="store_true", help="only redraw table and plots")
    parser.add_argument("--plot", action="append", metavar="LABEL",
                        help=f"a model to draw in the plots (repeatable, at most {MAX_PLOTTED}; default: all if they "
                             "fit, else the headline models)")
    args = parser.parse_args(argv)
    budgets = dict(item.split("=", 1) for item in args.budget)
    if not args.report_only:
        if not args.model:
            parser.error("give --model LABEL=PATH (or --report-only)")
        for item in args.model:
            if "=" not in item:
                parser.error(f"--model needs LABEL=PATH, got {item!r}")
            label, path = item.split("=", 1)
            evaluate_model(label, path, args.out_dir, splits=args.splits.split(","), over15=args.over15,
                           trust_pickle=args.trust_pickle, budget=budgets.get(label, ""), cutoff=args.cutoff,
                           precision=args.precision, orientation=args.orientation)
    try:
        path = write_report(args.out_dir, args.plot)
    except ValueError as err:
        parser.error(str(err))
    print(path)
    return path


if __name__ == "__main__":
    main()
