"""Prediction averages of two models, with the weight chosen on the validation split.

Reads the predictions ``qdf benchmark extrapolation`` saved for two models
(``extrapolation_<A>.npz`` and ``extrapolation_<B>.npz``, evaluated on the same molecules in
the same orientation), forms ``(1 - w) E_A + w E_B`` for ``w`` on a grid in [0, 1], picks the
``w`` with the lowest ``under14`` validation MAE, and writes the average as one more
extrapolation record (``extrapolation_<label>.json`` and ``.npz``, with each member's ``model``
and ``budget`` copied in, since a label may later name a newer model), so that it appears in the
extrapolation table beside its members. Test and ``over15`` never take part in the choice.
No model is evaluated: a measurement of what averaging two models would give, e.g. two
normalisations whose size errors have opposite signs. Usage::

    qdf benchmark blend --models qdf_qm9_shipped_random,qdf_qm9_phase27_local_cutoff30_random \
        --label blend_shipped_local30_random --out-dir docs/benchmarks
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

__all__ = ["blend_predictions", "main"]


def blend_predictions(first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray],
                      step: float = 0.05, select_on: str = "under14_val",
                      weight: Optional[float] = None) -> Dict[str, object]:
    """The validation-chosen average of two models' saved predictions.

    Args:
        first, second: arrays as in ``extrapolation_<label>.npz`` (``<split>_predicted``,
            ``<split>_reference``, ``<split>_n_atoms`` for each split).
        step: spacing of the weight grid on [0, 1].
        select_on: the split the weight is chosen on.
        weight: a weight chosen elsewhere (e.g. on the validation molecules in another
            orientation); the validation MAE on the grid is still reported.

    Returns:
        ``weight`` (of ``second``), ``validation_mae_by_weight`` and ``arrays``: the averaged
        predictions of every split both hold, in the ``.npz`` layout.

    Raises:
        ValueError: the records hold different molecules or energies, or lack ``select_on``.
    """
    splits = [key[:-len("_predicted")] for key in first if key.endswith("_predicted") and key in second]
    if select_on not in splits:
        raise ValueError(f"both records need the {select_on} split to choose the weight on")
    for split in splits:
        same = (np.array_equal(first[f"{split}_n_atoms"], second[f"{split}_n_atoms"])
                and np.allclose(first[f"{split}_reference"], second[f"{split}_reference"], rtol=0, atol=1e-6))
        if not same:
            raise ValueError(f"the two records hold different {split} molecules (evaluate both on the same "
                             "molecules, --over15 N and --orientation alike)")
    weights = np.round(np.linspace(0.0, 1.0, int(round(1.0 / step)) + 1), 10)

    def mix(split: str, weight: float) -> np.ndarray:
        return (1.0 - weight) * first[f"{split}_predicted"] + weight * second[f"{split}_predicted"]

    reference = first[f"{select_on}_reference"]
    validation = [float(np.abs(mix(select_on, w) - reference).mean()) for w in weights]
    if weight is None:
        weight = float(weights[int(np.argmin(validation))])
    elif not 0.0 <= weight <= 1.0:
        raise ValueError(f"the weight must lie in [0, 1], got {weight}")
    arrays = {}
    for split in splits:
        arrays[f"{split}_predicted"] = mix(split, weight)
        arrays[f"{split}_reference"] = first[f"{split}_reference"]
        arrays[f"{split}_n_atoms"] = first[f"{split}_n_atoms"]
    return {"weight": weight, "validation_mae_by_weight": dict(zip(weights.tolist(), validation)), "arrays": arrays}


def main(argv: List[str] = None) -> Dict[str, object]:
    from .extrapolation import errors_by_size, read_predictions, write_record

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, help="two labels A,B of extrapolation_<label>.npz in --out-dir")
    parser.add_argument("--label", required=True, help="label of the averaged record")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--step", type=float, default=0.05, help="spacing of the weight grid")
    parser.add_argument("--weight", type=float, metavar="W",
                        help="use this weight of B, chosen elsewhere, instead of choosing it here")
    parser.add_argument("--weight-from", metavar="TEXT", default="",
                        help="with --weight: where the weight was chosen (written into the record)")
    args = parser.parse_args(argv)
    labels = args.models.split(",")
    if len(labels) != 2:
        parser.error("--models takes two labels, A,B")
    try:
        first, second = (read_predictions(args.out_dir, label) for label in labels)
    except FileNotFoundError as err:
        parser.error(str(err))
    member_json = [json.loads((args.out_dir / f"extrapolation_{label}.json").read_text()) for label in labels]
    try:
        blended = blend_predictions(first, second, step=args.step, weight=args.weight)
    except ValueError as err:
        parser.error(str(err))
    weight = blended["weight"]
    chosen = ("chosen on under14 validation (qdf benchmark blend)" if args.weight is None
              else f"fixed, {args.weight_from or 'chosen elsewhere'}")
    result = {"label": args.label, "model": f"{1 - weight:.2f} x {labels[0]} + {weight:.2f} x {labels[1]}",
              "budget": f"prediction average of {labels[0]} and {labels[1]}, weight {weight:.2f} of the second "
                        f"{chosen}; the members' budgets together",
              "precision": "members' default", "orientation": member_json[0].get("orientation", "stored"),
              "members": labels,
              # what each label meant when averaged: labels such as qdf_qm9_average move on to newer models
              "member_models": [m.get("model", "") for m in member_json],
              "member_budgets": [m.get("budget", "") for m in member_json],
              "weight": weight, "validation_mae_by_weight": blended["validation_mae_by_weight"],
              "splits": {}}
    arrays = blended["arrays"]
    for split in [k[:-len("_predicted")] for k in arrays if k.endswith("_predicted")]:
        result["splits"][split] = errors_by_size(arrays[f"{split}_predicted"], arrays[f"{split}_reference"],
                                                 arrays[f"{split}_n_atoms"])
        print(f"{args.label} {split}: MAE {result['splits'][split]['mae_eV']:.4f} eV (weight {weight:.2f})")
    write_record(args.out_dir, result, arrays)
    return result


if __name__ == "__main__":
    main()
