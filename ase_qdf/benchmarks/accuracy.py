"""Accuracy of a trained model on the QM9 splits, overall and per number of atoms.

Evaluates the ``under14`` test split (or validation split) and, optionally, a
random sample of (or all) ``over15`` molecules against U0 from ``qm9pack``::

    python -m ase_qdf.benchmarks.accuracy MODEL --trust-pickle --split test --over15 3000

``MODEL`` is an ase-qdf model file, or a pickled SchNetPack ``best_model``
(needs ``--trust-pickle``: unpickling runs code, use it for your own files).
"""

import argparse
import json
from collections import defaultdict
from typing import Dict, List

import numpy as np
import torch

from .models import save_json, spk_energies

__all__ = ["errors_by_size", "main"]


def errors_by_size(predicted: np.ndarray, reference: np.ndarray, n_atoms: np.ndarray) -> Dict[str, object]:
    """MAE and RMSE (eV) overall and per number of atoms."""
    error = predicted - reference
    by_size = defaultdict(list)
    for n, e in zip(n_atoms, error):
        by_size[int(n)].append(e)
    return {
        "n": int(len(error)),
        "mae_eV": float(np.abs(error).mean()),
        "rmse_eV": float(np.sqrt((error**2).mean())),
        "by_n_atoms": {n: {"n": len(v), "mae_eV": float(np.abs(v).mean())} for n, v in sorted(by_size.items())},
    }


def main(argv: List[str] = None) -> Dict[str, object]:
    from schnetpack_ext.datasets import QM9Pack, qm9pack_atoms

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--trust-pickle", action="store_true")
    parser.add_argument("--split", default="test", choices=["test", "val"])
    parser.add_argument("--over15", type=int, default=0, help="over15 molecules to evaluate (random, seed 1729; -1: all)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    if args.model.endswith(".pt"):
        from ase_qdf.predict import predict_energies

        def energies(mols):
            return predict_energies(mols, model=args.model)
    else:
        if not args.trust_pickle:
            parser.error("pickled SchNetPack models need --trust-pickle (own files only)")
        model = torch.load(args.model, map_location="cpu", weights_only=False)
        cutoff = float(getattr(model.representation, "cutoff", 5.0))

        def energies(mols):
            return spk_energies(model, mols, cutoff)

    data = QM9Pack(subset="under14", batch_size=1)
    data.prepare_data()
    split = np.load(data.split_file)[f"{args.split}_idx"]
    pool = list(qm9pack_atoms("under14"))
    chosen = [pool[i] for i in split]
    results = {"model": args.model, f"under14_{args.split}": errors_by_size(
        energies([a for _, a, _ in chosen]), np.array([u for _, _, u in chosen]), np.array([len(a) for _, a, _ in chosen]))}
    if args.over15:
        over = list(qm9pack_atoms("over15"))
        if args.over15 > 0:
            over = [over[i] for i in sorted(np.random.default_rng(1729).choice(len(over), args.over15, replace=False))]
        results["over15"] = errors_by_size(
            energies([a for _, a, _ in over]), np.array([u for _, _, u in over]), np.array([len(a) for _, a, _ in over]))
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "by_n_atoms"} if isinstance(v, dict) else v)
                      for k, v in results.items()}, indent=2))
    save_json(results, args.json)
    return results


if __name__ == "__main__":
    main()
