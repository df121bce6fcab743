"""Models for benchmarks, built from the same Hydra experiments that ``spktrain`` uses."""

import json
from typing import Optional, Sequence

import numpy as np

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

import schnetpack as spk

__all__ = ["experiment_config", "model_from_experiment", "neighbor_cutoff", "spk_energies", "save_json"]


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
