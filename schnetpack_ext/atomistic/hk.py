"""The Hohenberg-Kohn (HK) map of QDF: electron density -> external potential.

By the first Hohenberg-Kohn theorem the ground-state density determines the
external potential. QDF learns this map point-wise on the grid and trains it
against the analytic Gaussian potential of the nuclei, which constrains the
learned orbitals to carry a physically meaningful density.

References:
    .. [#qdf] Tsubaki, Mizoguchi. Phys. Rev. Lett. 125, 206401 (2020).
    .. [#brockherde] Brockherde et al. Bypassing the Kohn-Sham equations with
       machine learning. Nat. Commun. 8, 872 (2017).
"""

from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

import schnetpack.nn as snn

from schnetpack_ext.representation.qdf import (
    autocast_bf16,
    density_key,
    external_potential_key,
    grid_weights_key,
)

__all__ = ["HKPotential"]


class HKPotential(nn.Module):
    """Point-wise MLP from the density rho(r) to the potential V(r) (eV-free units).

    Layout as in the paper: Linear(1 -> H), ``n_layers`` x [Linear(H -> H) + ReLU],
    Linear(H -> 1).

    During training the map can be evaluated on a random fraction of the grid
    points only: the weighted mean squared error over a uniform random subset
    is an unbiased estimate of the full one, at a fraction of the cost.
    Evaluation always uses all points.

    Args:
        n_hidden: hidden width H.
        n_layers: number of hidden H x H layers.
        point_fraction: fraction of grid points used in training mode.
        mixed_precision: bfloat16 autocast of the MLP: ``"off"``, ``"train"``
            or ``"always"`` (see :class:`schnetpack_ext.representation.QDF`).
        output_key: key of the predicted potential; the matching analytic
            potential and quadrature weights are written to
            ``output_key + "_target"`` and ``output_key + "_weights"``.
    """

    #: class default, so that models pickled before the option existed still load
    mixed_precision = "off"

    def __init__(
        self,
        n_hidden: int = 250,
        n_layers: int = 3,
        point_fraction: float = 1.0,
        output_key: str = "hk_potential",
        mixed_precision: str = "off",
    ):
        super().__init__()
        self.hyperparameters = dict(
            n_hidden=n_hidden, n_layers=n_layers, point_fraction=point_fraction,
            output_key=output_key, mixed_precision=mixed_precision,
        )
        self.mixed_precision = mixed_precision
        if not 0.0 < point_fraction <= 1.0:
            raise ValueError("point_fraction must lie in (0, 1]")
        self.point_fraction = point_fraction
        self.output_key = output_key
        self.target_key = output_key + "_target"
        self.weights_key = output_key + "_weights"
        layers = [snn.Dense(1, n_hidden, activation=None)]
        layers += [snn.Dense(n_hidden, n_hidden, activation=F.relu) for _ in range(n_layers)]
        layers += [snn.Dense(n_hidden, 1, activation=None)]
        self.mlp = nn.Sequential(*layers)
        self.model_outputs = [output_key, self.target_key, self.weights_key]

    def __setstate__(self, state):
        # models pickled before ``hyperparameters`` existed: recover them
        super().__setstate__(state)
        if "hyperparameters" not in self.__dict__:
            self.hyperparameters = dict(
                n_hidden=self.mlp[0].out_features, n_layers=len(self.mlp) - 2,
                point_fraction=getattr(self, "point_fraction", 1.0),
                output_key=self.output_key, mixed_precision=self.mixed_precision,
            )

    def forward(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        density = inputs[density_key]
        target = inputs[external_potential_key]
        weights = inputs[grid_weights_key]
        if self.training and self.point_fraction < 1.0:
            n_keep = max(1, int(round(self.point_fraction * density.shape[0])))
            keep = torch.randperm(density.shape[0], device=density.device)[:n_keep]
            density, target, weights = density[keep], target[keep], weights[keep]
        with autocast_bf16(self.mixed_precision, self.training, density.device):
            potential = self.mlp(density[:, None]).squeeze(-1)
        inputs[self.output_key] = potential.to(density.dtype)
        inputs[self.target_key] = target
        inputs[self.weights_key] = weights
        return inputs
