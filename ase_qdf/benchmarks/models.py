"""Models for benchmarks, built from the same Hydra experiments that ``spktrain`` uses."""

import json
from typing import Optional, Sequence

import numpy as np

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

import schnetpack as spk

__all__ = ["experiment_config", "model_from_experiment", "neighbor_cutoff", "spk_energies", "save_json",
           "add_model_arguments", "energy_function", "qm9_sample", "finish"]


def experiment_config(experiment: str, overrides: Sequence[str] = ()):
    """Compose SchNetPack's ``train`` config with one of our experiments."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="schnetpack.configs", version_base="1.2"):
        return compose(config_name="train", overrides=[f"experiment={experiment}", *overrides])


def model_from_experiment(experiment: str, overrides: Sequence[str] = (), seed: int = 0) -> torch.nn.Module:
    """The untrained model of an experiment (random weights, offsets zero).

    Args:
        experiment: e.g. ``qdf_qm9``, ``qdf_qm9_paper``, ``schnet_qm9_under14``.
        overrides: Hydra overrides such as ``model.representation.n_atom_basis=64``.
        seed: torch seed for the initial weights.
    """
    cfg = experiment_config(experiment, overrides)
    torch.manual_seed(seed)
    return instantiate(cfg.model)


def neighbor_cutoff(experiment: str, overrides: Sequence[str] = ()) -> float:
    """The neighbour-list cutoff of an experiment (``globals.cutoff``)."""
    return float(experiment_config(experiment, overrides).globals.cutoff)


def spk_energies(model, molecules, cutoff: float, energy_key: str = "energy_U0",
                 dtype: torch.dtype = torch.float32, batch_size: int = 64) -> np.ndarray:
    """Energies (eV) of a SchNetPack model on ASE molecules, batched, no gradients."""
    converter = spk.interfaces.AtomsConverter(
        neighbor_list=spk.transform.MatScipyNeighborList(cutoff=cutoff), dtype=dtype
    )
    model = model.to(dtype).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(molecules), batch_size):
            batch = converter(list(molecules[start : start + batch_size]))
            out.append(model(batch)[energy_key].double().numpy())
    return np.concatenate(out)


def save_json(result, path: Optional[str]) -> None:
    """Write a benchmark result as JSON when a path is given."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)


def add_model_arguments(parser, default_experiment: str = "qdf_qm9") -> None:
    """The options that choose a benchmark's model: a random-weight experiment or a file."""
    parser.add_argument("--experiment", default=default_experiment, help="random-weight model of this experiment")
    parser.add_argument("--override", action="append", default=[], help="Hydra override (repeatable)")
    parser.add_argument("--model", help="a trained model instead: an ase-qdf .pt file, or a SchNetPack "
                        "best_model or Lightning .ckpt file (pickled)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow unpickling --model (runs code: own files only)")
    parser.add_argument("--cutoff", type=float, help="neighbour-list cutoff for --model (default: the model's)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])


def energy_function(args, parser):
    """molecules -> energies (eV) for the model chosen by :func:`add_model_arguments`.

    An ase-qdf ``.pt`` file runs through :func:`ase_qdf.predict_energies` (weights only,
    the calculator's code); pickled SchNetPack models only with ``--trust-pickle``.

    Returns:
        (energies, source): the function and a description of the model.
    """
    dtype = getattr(torch, args.dtype)
    if args.model and args.model.endswith(".pt"):
        from ase_qdf.predict import QDFEngine, predict_energies

        engine = QDFEngine(args.model, device="cpu", dtype=args.dtype)
        return (lambda molecules: predict_energies(molecules, model=engine)), args.model
    if args.model:
        if not args.trust_pickle:
            parser.error("--model files other than .pt are pickled SchNetPack models; "
                         "pass --trust-pickle for your own files")
        if args.model.endswith(".ckpt"):
            from schnetpack_ext.hk_task import QDFTask

            model = QDFTask.load_from_checkpoint(args.model, map_location="cpu").model
        else:
            model = torch.load(args.model, map_location="cpu", weights_only=False)
        cutoff = args.cutoff or float(model.representation.cutoff)
        source = args.model
    else:
        model = model_from_experiment(args.experiment, args.override)
        cutoff = neighbor_cutoff(args.experiment, args.override)
        source = f"{args.experiment} (random weights) {' '.join(args.override)}".strip()
    model = model.to(dtype).eval()
    return (lambda molecules: spk_energies(model, molecules, cutoff, dtype=dtype)), source


def qm9_sample(subset: str, n: int, seed: int = 1729) -> list:
    """``n`` random molecules of a ``qm9pack`` subset (``under14``, ``over15``), in file order."""
    from schnetpack_ext.datasets import qm9pack_atoms

    rng = np.random.default_rng(seed)
    pool = [atoms for _, atoms, _ in qm9pack_atoms(subset)]
    return [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))]


def finish(result: dict, args, source: str) -> dict:
    """Add the dtype and the model's description to a result, print it, write ``--json``."""
    result["dtype"] = args.dtype
    result["source"] = source
    print(json.dumps(result, indent=2))
    save_json(result, args.json)
    return result
