"""Neighbourhood sizes of the local normalisation: do larger molecules leave the training range?

With ``normalisation: local`` every atom A scales its orbitals over its neighbourhood,
weighted by ``w_AB`` = :func:`~schnetpack_ext.representation.qdf.smooth_switch` of the
distance (``local_cutoff``, ``local_width``; ``w_AA`` = 1). The neighbourhood weight
``sum_B w_AB`` counts the atoms the scale averages over. This benchmark compares its
distribution on a reference split (the ``under14`` training molecules: what the model
learned from) with the ``over15`` molecules, per cutoff: the fraction of ``over15`` atoms
above the largest reference value is the part of the larger molecules on which the local
scale is outside its training range. The molecule-wide normalisation is the limit of an
infinite cutoff, where every ``over15`` atom is outside. No model is evaluated. Usage::

    qdf benchmark neighbourhoods --cutoffs 4.75,3.5,3.0 --over15 3000 --json neighbourhoods.json
"""

import argparse
import json
from typing import Dict, List, Sequence

import numpy as np
import torch
from ase import Atoms

__all__ = ["neighbourhood_weights", "compare_neighbourhoods", "main"]


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


def main(argv: List[str] = None) -> Dict[str, object]:
    from .models import save_json
    from .extrapolation import load_molecules

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cutoffs", default="4.75,4.0,3.5,3.0", help="local cutoffs (Å), comma separated")
    parser.add_argument("--width", type=float, default=1.5, help="switch width (Å)")
    parser.add_argument("--reference", default="train", choices=("train", "val", "test"),
                        help="under14 split of the reference molecules")
    parser.add_argument("--over15", type=int, default=3000, help="over15 molecules: -1 all, N random (seed 1729)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    cutoffs = [float(c) for c in args.cutoffs.split(",")]
    _, reference, _ = load_molecules(args.reference)
    _, larger, _ = load_molecules("over15", args.over15)
    result = {"reference": f"under14 {args.reference} ({len(reference)} molecules)",
              "larger": f"over15 ({len(larger)} molecules)", "width_A": args.width,
              "cutoffs": compare_neighbourhoods(reference, larger, cutoffs, args.width)}
    print(json.dumps(result, indent=2))
    save_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
