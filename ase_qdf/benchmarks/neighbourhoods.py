"""Neighbourhood sizes of the local normalisation: do larger molecules leave the training range?

With ``normalisation: local`` every atom A scales its orbitals over its neighbourhood,
weighted by ``w_AB`` = :func:`~schnetpack_ext.representation.qdf.smooth_switch` of the
distance (``local_cutoff``, ``local_width``; ``w_AA`` = 1). The neighbourhood weight
``sum_B w_AB`` counts the atoms the scale averages over. This benchmark compares its
distribution on a reference split (the ``under14`` training molecules: what the model
learned from) with the ``over15`` molecules, per cutoff: the fraction of ``over15`` atoms
above the largest reference value is the part of the larger molecules on which the local
scale is outside its training range. The molecule-wide normalisation is the limit of an
infinite cutoff, where every ``over15`` atom is outside. No model is evaluated.

``--records`` reads the predictions that ``qdf benchmark extrapolation`` saved
(``extrapolation_<label>.npz``) and splits each model's signed ``over15`` error, per band
of sizes, into terciles of the molecules' fraction of such atoms (compactness at a fixed
size): a model whose error drifts with it is biased by the neighbourhood size. Usage::

    qdf benchmark neighbourhoods --cutoffs 4.75,3.5,3.0 --over15 3000 --json neighbourhoods.json
    qdf benchmark neighbourhoods --cutoffs 4.75 --records qdf_qm9_shipped_random,painn_h200_9min
"""

import argparse
import json
from typing import Dict, List, Sequence

import numpy as np
import torch
from ase import Atoms

__all__ = ["neighbourhood_weights", "compare_neighbourhoods", "fraction_above", "signed_error_by_fraction", "main"]

#: size bands (numbers of atoms) of :func:`signed_error_by_fraction`
SIZE_BANDS = ((15, 17), (18, 20), (21, 23), (24, 29))


def neighbourhood_weights(molecules: Sequence[Atoms], cutoff: float, width: float,
                          chunk: int = 4096) -> np.ndarray:
    """``sum_B w_AB`` for every atom A of the molecules, concatenated in order.

    Args:
        molecules: the molecules (atoms of different molecules never neighbour).
        cutoff: the local normalisation's ``local_cutoff`` (Å).
        width: its ``local_width`` (Å).
        chunk: molecules per distance tensor (bounds the memory).
    """
    from schnetpack_ext.representation.qdf import smooth_switch

    weights = [np.zeros(0)]
    for start in range(0, len(molecules), chunk):
        block = molecules[start:start + chunk]
        # the block's molecules padded to the largest, one distance tensor for all
        n_atoms = torch.tensor([len(a) for a in block])
        real = torch.arange(int(n_atoms.max()))[None, :] < n_atoms[:, None]
        positions = torch.zeros(len(block), int(n_atoms.max()), 3, dtype=torch.float64)
        positions[real] = torch.from_numpy(np.concatenate([a.positions for a in block]))
        w = smooth_switch(torch.cdist(positions, positions), cutoff, width) * real[:, None, :]
        weights.append(w.sum(-1)[real].numpy())
    return np.concatenate(weights)


def compare_neighbourhoods(reference: Sequence[Atoms], larger: Sequence[Atoms], cutoffs: Sequence[float],
                           width: float) -> Dict[str, Dict[str, float]]:
    """Neighbourhood weights of ``reference`` and ``larger`` per cutoff.

    Args:
        reference: the molecules the model was trained on.
        larger: the molecules it extrapolates to.
        cutoffs: local cutoffs (Å) to compare.
        width: the switch width (Å), at most the smallest cutoff.

    Returns:
        per cutoff (key ``"3.5"``): median, 99th percentile and maximum of both, and
        the fractions of ``larger`` atoms above the reference's 99th percentile and maximum.
    """
    result = {}
    for cutoff in cutoffs:
        if not 0.0 < width <= cutoff:
            raise ValueError(f"need 0 < width <= cutoff, got width {width} and cutoff {cutoff}")
        ref = neighbourhood_weights(reference, cutoff, width)
        big = neighbourhood_weights(larger, cutoff, width)
        ref_p99, ref_max = np.percentile(ref, 99), ref.max()
        result[f"{cutoff:g}"] = {
            "reference_median": float(np.median(ref)), "reference_p99": float(ref_p99),
            "reference_max": float(ref_max),
            "larger_median": float(np.median(big)), "larger_p99": float(np.percentile(big, 99)),
            "larger_max": float(big.max()),
            "larger_fraction_above_reference_p99": float(np.mean(big > ref_p99)),
            "larger_fraction_above_reference_max": float(np.mean(big > ref_max)),
        }
    return result


def fraction_above(molecules: Sequence[Atoms], cutoff: float, width: float, limit: float) -> np.ndarray:
    """Per molecule, the fraction of its atoms whose neighbourhood weight exceeds ``limit``.

    Args:
        molecules: the molecules.
        cutoff, width: as :func:`neighbourhood_weights`.
        limit: e.g. the largest weight of the training molecules.
    """
    weights = neighbourhood_weights(molecules, cutoff, width)
    above = (weights > limit).astype(float)
    n_atoms = np.array([len(a) for a in molecules])
    return np.add.reduceat(above, np.cumsum(n_atoms) - n_atoms) / n_atoms


def signed_error_by_fraction(signed_error: np.ndarray, n_atoms: np.ndarray, fraction: np.ndarray,
                             bands: Sequence[Sequence[int]] = SIZE_BANDS) -> Dict[str, Dict[str, object]]:
    """Mean signed error per size band and tercile of ``fraction`` (see :func:`fraction_above`).

    Args:
        signed_error: predicted - reference per molecule (eV).
        n_atoms: atoms per molecule.
        fraction: per molecule, e.g. its fraction of atoms above the training range.
        bands: inclusive ranges of numbers of atoms.

    Returns:
        per band (key ``"15-17"``): molecules, the correlation of error and fraction, and
        per tercile (lowest fraction first) the mean fraction and mean signed error.
    """
    result = {}
    for low, high in bands:
        chosen = (n_atoms >= low) & (n_atoms <= high)
        if chosen.sum() < 3:
            continue
        error, frac = signed_error[chosen], fraction[chosen]
        # terciles by rank, so that ties (many molecules share a fraction) still split evenly
        terciles = np.array_split(np.argsort(frac, kind="stable"), 3)
        correlation = np.corrcoef(frac, error)[0, 1] if np.ptp(frac) > 0 and np.ptp(error) > 0 else float("nan")
        result[f"{low}-{high}"] = {
            "n": int(chosen.sum()), "correlation": float(correlation),
            "tercile_mean_fraction": [float(frac[t].mean()) for t in terciles],
            "tercile_mean_signed_error_eV": [float(error[t].mean()) for t in terciles],
        }
    return result


def main(argv: List[str] = None) -> Dict[str, object]:
    from schnetpack_ext.datasets.qm9pack import SUBSET_SIZES

    from .models import save_json
    from .extrapolation import load_molecules, read_predictions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cutoffs", default="4.75,4.0,3.5,3.0", help="local cutoffs (Å), comma separated")
    parser.add_argument("--width", type=float, default=1.5, help="switch width (Å)")
    parser.add_argument("--reference", default="train", choices=("train", "val", "test"),
                        help="under14 split of the reference molecules")
    parser.add_argument("--over15", type=int, default=3000, help="over15 molecules: -1 all, N random (seed 1729)")
    parser.add_argument("--records", help="labels of extrapolation_<label>.npz in --out-dir: signed over15 error "
                        "by tercile of the fraction of atoms above the reference maximum, at the first cutoff")
    parser.add_argument("--out-dir", default="docs/benchmarks", help="folder of the --records")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    cutoffs = [float(c) for c in args.cutoffs.split(",")]
    _, reference, _ = load_molecules(args.reference)
    _, larger, _ = load_molecules("over15", args.over15)
    result = {"reference": f"under14 {args.reference} ({len(reference)} molecules)",
              "larger": f"over15 ({len(larger)} molecules)", "width_A": args.width,
              "cutoffs": compare_neighbourhoods(reference, larger, cutoffs, args.width)}
    if args.records:
        limit = result["cutoffs"][f"{cutoffs[0]:g}"]["reference_max"]
        result["records"] = {"cutoff_A": cutoffs[0], "limit": limit}
        fractions = {}  # per over15 sample size: the records hold all 116,041 or a seeded random sample
        for label in args.records.split(","):
            try:
                saved = read_predictions(args.out_dir, label)
            except FileNotFoundError as err:
                parser.error(str(err))
            n_atoms = saved["over15_n_atoms"]
            size = len(n_atoms)
            if size not in fractions:
                _, molecules, _ = load_molecules("over15", -1 if size == SUBSET_SIZES["over15"] else size)
                if not np.array_equal([len(a) for a in molecules], n_atoms):
                    raise ValueError(f"{label}: its over15 molecules are not the seeded sample of {size}")
                fractions[size] = fraction_above(molecules, cutoffs[0], args.width, limit)
            result["records"][label] = signed_error_by_fraction(
                saved["over15_predicted"] - saved["over15_reference"], n_atoms, fractions[size])
    print(json.dumps(result, indent=2))
    save_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
