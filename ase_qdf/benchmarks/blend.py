"""Prediction averages of two or more models, with the weights chosen on the validation split.

Reads the predictions ``qdf benchmark extrapolation`` saved for each model
(``extrapolation_<A>.npz``, ``extrapolation_<B>.npz``, ..., evaluated on the same molecules in
the same orientation), forms ``sum_i w_i E_i`` for every weight vector on a grid of the simplex
(``w_i >= 0``, ``sum_i w_i = 1``, spacing ``--step``), picks the weights with the lowest
``under14`` validation MAE, and writes the average as one more extrapolation record
(``extrapolation_<label>.json`` and ``.npz``, with each member's ``model`` and ``budget`` copied
in, since a label may later name a newer model), so that it appears in the extrapolation table
beside its members. Test and ``over15`` never take part in the choice. No model is evaluated:
a measurement of what averaging the models would give, e.g. two normalisations whose size errors
have opposite signs; ``qdf average`` then writes the file with the chosen weights. Usage::

    qdf benchmark blend --models qdf_qm9_shipped_random,qdf_qm9_phase27_local_cutoff30_random \
        --label blend_shipped_local30_random --out-dir docs/benchmarks
"""

import argparse
import itertools
import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ase_qdf.average import check_average_weights

__all__ = ["blend_predictions", "simplex_grid", "main"]


def simplex_grid(n_members: int, step: float) -> np.ndarray:
    """Every weight vector of ``n_members`` non-negative weights summing to 1 on a grid.

    Args:
        n_members: number of weights per vector (at least 2).
        step: spacing of the grid; ``1 / step`` must be a whole number.

    Returns:
        array ``(n_vectors, n_members)`` in lexicographic order of the first ``n_members - 1``
        weights (the last member takes the rest, so for two members B's weight falls from 1 to
        0); a tie in the validation MAE goes to the first of these vectors.
    """
    if not step > 0:
        raise ValueError(f"the step must be positive, got {step}")
    parts = int(round(1.0 / step))
    if n_members < 2 or parts < 1 or abs(parts * step - 1.0) > 1e-9:
        raise ValueError(f"need at least two members and a step dividing 1, got {n_members} members, step {step}")
    counts = [c + (parts - sum(c),) for c in itertools.product(range(parts + 1), repeat=n_members - 1)
              if sum(c) <= parts]
    return np.round(np.asarray(counts, dtype=float) / parts, 10)


def _weights_key(weights: Sequence[float]) -> str:
    return ",".join(f"{w:g}" for w in weights)


def blend_predictions(records: Sequence[Mapping[str, np.ndarray]], step: float = 0.05,
                      select_on: str = "under14_val",
                      weights: Optional[Sequence[float]] = None) -> Dict[str, object]:
    """The validation-chosen weighted average of several models' saved predictions.

    Args:
        records: two or more sets of arrays as in ``extrapolation_<label>.npz``
            (``<split>_predicted``, ``<split>_reference``, ``<split>_n_atoms`` for each split).
        step: spacing of the weight grid on the simplex.
        select_on: the split the weights are chosen on.
        weights: weights chosen elsewhere (e.g. on the validation molecules in another
            orientation), one per record, summing to 1; the validation MAE on the grid is
            still reported.

    Returns:
        ``weights`` (one per record), ``validation_mae_by_weights`` (keyed by the weights joined
        with commas) and ``arrays``: the averaged predictions of every split all records hold,
        in the ``.npz`` layout.

    Raises:
        ValueError: fewer than two records, records holding different molecules or energies,
            lacking ``select_on``, or weights that are negative, miscounted or do not sum to 1.
    """
    if len(records) < 2:
        raise ValueError(f"a blend needs at least two records, got {len(records)}")
    first = records[0]
    splits = [key[:-len("_predicted")] for key in first if key.endswith("_predicted")
              and all(key in other for other in records[1:])]
    if select_on not in splits:
        raise ValueError(f"every record needs the {select_on} split to choose the weights on")
    for split in splits:
        for other in records[1:]:
            same = (np.array_equal(first[f"{split}_n_atoms"], other[f"{split}_n_atoms"])
                    and np.allclose(first[f"{split}_reference"], other[f"{split}_reference"], rtol=0, atol=1e-6))
            if not same:
                raise ValueError(f"the records hold different {split} molecules (evaluate all on the same "
                                 "molecules, --over15 N and --orientation alike)")
    grid = simplex_grid(len(records), step)

    def predictions(split: str) -> np.ndarray:
        return np.stack([np.asarray(record[f"{split}_predicted"], dtype=np.float64) for record in records])

    reference = np.asarray(first[f"{select_on}_reference"], dtype=np.float64)
    validation = np.abs(grid @ predictions(select_on) - reference).mean(axis=1)
    if weights is None:
        chosen = grid[int(np.argmin(validation))]
    else:
        try:  # the rule a model file's average obeys, so that the chosen weights can be written as one
            chosen = np.asarray(check_average_weights(weights, len(records)), dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"give one weight in [0, 1] per record ({len(records)}), summing to 1: {err}") from None
    arrays = {}
    for split in splits:
        arrays[f"{split}_predicted"] = chosen @ predictions(split)
        arrays[f"{split}_reference"] = first[f"{split}_reference"]
        arrays[f"{split}_n_atoms"] = first[f"{split}_n_atoms"]
    return {"weights": [float(w) for w in chosen],
            "validation_mae_by_weights": {_weights_key(w): float(m) for w, m in zip(grid, validation)},
            "arrays": arrays}


def main(argv: List[str] = None) -> Dict[str, object]:
    from .extrapolation import errors_by_size, read_predictions, write_record

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True,
                        help="two or more labels A,B[,C...] of extrapolation_<label>.npz in --out-dir")
    parser.add_argument("--label", required=True, help="label of the averaged record")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--step", type=float, default=0.05, help="spacing of the weight grid")
    parser.add_argument("--weight", metavar="W",
                        help="use these weights, chosen elsewhere, instead of choosing them here: one per model "
                             "(comma-separated, summing to 1), or for two models the weight of B alone")
    parser.add_argument("--weight-from", metavar="TEXT", default="",
                        help="with --weight: where the weights were chosen (written into the record)")
    args = parser.parse_args(argv)
    labels = args.models.split(",")
    if len(labels) < 2:
        parser.error("--models takes two or more labels, A,B[,C...]")
    fixed = None
    if args.weight is not None:
        try:
            fixed = [float(w) for w in args.weight.split(",")]
        except ValueError:
            parser.error(f"--weight takes numbers, got {args.weight!r}")
        if len(labels) == 2 and len(fixed) == 1:
            fixed = [1.0 - fixed[0], fixed[0]]
    try:
        records = [read_predictions(args.out_dir, label) for label in labels]
    except FileNotFoundError as err:
        parser.error(str(err))
    member_json = [json.loads((args.out_dir / f"extrapolation_{label}.json").read_text()) for label in labels]
    try:
        blended = blend_predictions(records, step=args.step, weights=fixed)
    except ValueError as err:
        parser.error(str(err))
    weights = blended["weights"]
    chosen = ("chosen on under14 validation (qdf benchmark blend)" if fixed is None
              else f"fixed, {args.weight_from or 'chosen elsewhere'}")
    mixture = " + ".join(f"{w:.2f} x {label}" for w, label in zip(weights, labels))
    result = {"label": args.label, "model": mixture,
              "budget": f"prediction average {mixture}, weights {chosen}; the members' budgets together",
              "precision": "members' default", "orientation": member_json[0].get("orientation", "stored"),
              "members": labels,
              # what each label meant when averaged: labels such as qdf_qm9_average move on to newer models
              "member_models": [m.get("model", "") for m in member_json],
              "member_budgets": [m.get("budget", "") for m in member_json],
              "weights": weights, "validation_mae_by_weights": blended["validation_mae_by_weights"],
              "splits": {}}
    arrays = blended["arrays"]
    for split in [k[:-len("_predicted")] for k in arrays if k.endswith("_predicted")]:
        result["splits"][split] = errors_by_size(arrays[f"{split}_predicted"], arrays[f"{split}_reference"],
                                                 arrays[f"{split}_n_atoms"])
        print(f"{args.label} {split}: MAE {result['splits'][split]['mae_eV']:.4f} eV "
              f"(weights {_weights_key(weights)})")
    write_record(args.out_dir, result, arrays)
    return result


if __name__ == "__main__":
    main()
