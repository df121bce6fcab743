"""Models for benchmarks, built from the same Hydra experiments that ``spktrain`` uses."""

from typing import List, Sequence

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

__all__ = ["experiment_config", "model_from_experiment"]


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
