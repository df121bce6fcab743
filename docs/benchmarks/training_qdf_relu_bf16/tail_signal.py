"""Can the validation split see the 27-29-atom tail? (training log, session 22)

Reads the committed `extrapolation_qdf_qm9_phaseN.json` records of the order-11 chain (phases 8
to 22, molecules as stored) and compares, from one evaluated phase to the next, the change of two
validation signals with the change of the `over15` tail:

- validation MAE (what selects checkpoints and ships files);
- validation size drift: mean signed error of the 14-atom validation molecules minus that of
  those with at most 12 atoms (a within-range trend of the error with size).

Only `under14_val` enters the signals; `over15` is what they are compared with. Run from the
repository root: `python docs/benchmarks/training_qdf_relu_bf16/tail_signal.py [PHASE ...]`.
"""
import json
import sys
from pathlib import Path

import numpy as np

from ase_qdf.benchmarks.extrapolation import pooled_by_size

BENCHMARKS = Path("docs/benchmarks")
PHASES = [int(p) for p in sys.argv[1:]] or [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 22]


rows = []
for phase in PHASES:
    splits = json.loads((BENCHMARKS / f"extrapolation_qdf_qm9_phase{phase}.json").read_text())["splits"]
    val, over15 = splits["under14_val"], splits["over15"]
    assert over15["n"] == 116041, phase
    drift = (pooled_by_size(val["by_n_atoms"], [14], "mean_signed_error_eV")
             - pooled_by_size(val["by_n_atoms"], range(13), "mean_signed_error_eV"))
    tail = lambda key: pooled_by_size(over15["by_n_atoms"], [27, 28, 29], key)  # noqa: E731
    rows.append((phase, val["mae_eV"], drift, over15["mae_eV"], tail("mae_eV"), tail("mean_signed_error_eV")))

names = ["val MAE", "val size drift", "over15 MAE", "27-29 MAE", "27-29 signed"]
print("| phase | " + " | ".join(names) + " |")
print("|---" * (len(names) + 1) + "|")
for phase, *values in rows:
    print(f"| {phase} | " + " | ".join(f"{v:+.4f}" for v in values) + " |")

change = np.diff(np.array([r[1:] for r in rows]), axis=0)
print(f"\nchanges between consecutive evaluated phases ({len(change)}):")
for j in (0, 1):
    for k in (2, 3, 4):
        r = np.corrcoef(change[:, j], change[:, k])[0, 1]
        same = np.mean(np.sign(change[:, j]) == np.sign(change[:, k]))
        print(f"  d({names[j]}) vs d({names[k]}): r = {r:+.2f}, same sign {same:.0%}")
slope, offset = np.polyfit(change[:-1, 1], change[:-1, 3], 1)
spread = np.std(change[:-1, 3] - (offset + slope * change[:-1, 1]), ddof=2)
predicted = rows[-2][4] + offset + slope * change[-1, 1]
print(f"\nfitted without the last change: d(27-29 MAE) = {offset:+.4f} + {slope:.2f} d(val size drift), "
      f"residual sd {spread:.4f}")
print(f"phase {rows[-1][0]}: predicted 27-29 MAE {predicted:.4f} +- {spread:.4f}, measured {rows[-1][4]:.4f}")
