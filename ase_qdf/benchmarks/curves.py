"""Learning curves of SchNetPack training runs: validation MAE against epoch, side by side.

Reads the CSV logs that ``spktrain ... logger=csv`` writes (``<run>/csv/version_*/metrics.csv``,
or any ``metrics*.csv`` in a folder; several files of a resumed run are joined in name
order) and writes one plot and a markdown table (epochs, last and best validation MAE,
and the test MAE that ``spktrain`` reports after training)::

    qdf benchmark curves --run SchNet=runs/schnet --run QDF=runs/qdf \\
        --out docs/benchmarks/h200/curves.png
"""

import argparse
import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["read_metrics", "learning_curve", "main"]


def read_metrics(run: Path) -> List[Dict[str, str]]:
    """All rows of a run's CSV logs, in file-name order (so resumed runs continue)."""
    run = Path(run)
    if run.is_file():
        files = [run]
    else:
        files = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
        files = files or sorted(run.glob("metrics*.csv"))
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {run}")
    rows: List[Dict[str, str]] = []
    for path in files:
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def learning_curve(rows: Sequence[Dict[str, str]], key: str = "energy_U0") -> Tuple[List[int], List[float], Optional[float]]:
    """Epochs and validation MAEs (eV), and the last test MAE (None if not tested)."""
    epochs, maes, test = [], [], None
    for row in rows:
        if row.get(f"val_{key}_mae"):
            epochs.append(int(row["epoch"]))
            maes.append(float(row[f"val_{key}_mae"]))
        if row.get(f"test_{key}_mae"):
            test = float(row[f"test_{key}_mae"])
    return epochs, maes, test


def main(argv: List[str] = None) -> Dict[str, Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=DIR",
                        help="a run folder (or metrics CSV) and its label (repeatable)")
    parser.add_argument("--key", default="energy_U0", help="property name in the logs")
    parser.add_argument("--out", required=True, help="plot file (.png); the table goes next to it (.md)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary: Dict[str, Dict[str, object]] = {}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for item in args.run:
        label, _, path = item.partition("=")
        if not path:
            parser.error(f"--run wants LABEL=DIR, got {item!r}")
        epochs, maes, test = learning_curve(read_metrics(Path(path)), args.key)
        if not epochs:
            parser.error(f"{path}: no validation MAE of {args.key!r} in the logs")
        ax.plot(epochs, maes, marker=".", label=label)
        summary[label] = {"epochs": epochs[-1] + 1, "val_mae_last": maes[-1], "val_mae_best": min(maes),
                          "test_mae": test}
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MAE (eV)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(args.out)
    fig.savefig(out, dpi=120)
    plt.close(fig)

    lines = ["| run | epochs | val MAE last (eV) | val MAE best (eV) | test MAE (eV, spktrain) |", "|---|---|---|---|---|"]
    for label, s in summary.items():
        test = "–" if s["test_mae"] is None else f"{s['test_mae']:.4f}"
        lines.append(f"| {label} | {s['epochs']} | {s['val_mae_last']:.4f} | {s['val_mae_best']:.4f} | {test} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
