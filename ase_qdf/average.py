"""The weighted average of several QDF models, used as one model.

Two QDF models whose size errors have opposite signs (the paper's molecule-wide
orbital normalisation under-binds the largest QM9 molecules, the local normalisation
over-binds mid-sized ones) predict better together than apart:
``E = sum_k w_k E_k``, with the weights chosen on the validation split
(``qdf benchmark blend``). Per-atom energies and forces are averaged with the same
weights; as the average is linear, the averaged forces are exactly ``-dE/dR`` of the
averaged energy. All members read one neighbour list, so they share the cutoff.

A member may also be SchNetPack's PaiNN (``qdf_qm9_hybrid``): its errors are much less
alike the QDF models' than theirs are alike each other, so the average gains more. The
density, the HK potential and the Lebedev order are the QDF members' (:func:`qdf_members`).

A :class:`QDFAverage` is saved and loaded like a single model
(:func:`ase_qdf.model_io.save_qdf_average`, :func:`ase_qdf.model_io.load_qdf_model`),
and the calculator, the batch API and ``qdf screen`` take it wherever they take one.

References:
    .. [#qdf_average] Tsubaki, Mizoguchi. Quantum deep field: data-driven wave function,
       electron density generation, and atomization energy prediction and
       extrapolation with machine learning. Phys. Rev. Lett. 125, 206401 (2020).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["QDFAverage", "check_average_weights", "model_cutoff", "model_members", "qdf_members"]

#: how far the weights may sum from 1 (they are stored as float64)
WEIGHT_SUM_TOLERANCE = 1e-9


def check_average_weights(weights: Sequence[float], n_members: int) -> List[float]:
    """The weights of an average as floats; ``ValueError`` naming what is wrong.

    Args:
        weights: one weight per member.
        n_members: number of members (at least 2).
    """
    if n_members < 2:
        raise ValueError(f"an average needs at least 2 models, got {n_members}")
    try:
        weights = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise ValueError(f"the weights must be numbers, got {weights!r}") from None
    if len(weights) != n_members:
        raise ValueError(f"{len(weights)} weight(s) for {n_members} models; give one weight per model")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"the weights must be finite and non-negative, got {weights}")
    if abs(sum(weights) - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"the weights must sum to 1, got {weights} (sum {sum(weights):.12g})")
    return weights


class QDFAverage(nn.Module):
    """The weighted average ``E = sum_k w_k E_k`` of QDF models.

    Args:
        members: ``NeuralNetworkPotential`` models built by
            :func:`ase_qdf.model_io.build_qdf_model`, QDF or PaiNN (all with the same
            cutoff and energy key).
        weights: one non-negative weight per member, summing to 1.

    Raises:
        ValueError: fewer than two members, bad weights, or members that differ in
            cutoff or energy key.
    """

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        members = list(members)
        weights = check_average_weights(weights, len(members))
        configs = [getattr(m, "qdf_config", None) for m in members]
        if any(c is None for c in configs):
            raise ValueError("every member of an average must be a model built by ase_qdf.model_io")
        cutoffs = sorted({float(m.representation.cutoff) for m in members})
        if len(cutoffs) > 1:
            raise ValueError(f"the members of an average must share one cutoff (they read one neighbour "
                             f"list), got {cutoffs} Å")
        keys = sorted({c["energy_key"] for c in configs})
        if len(keys) > 1:
            raise ValueError(f"the members of an average must predict the same energy, got {keys}")
        self.members = nn.ModuleList(members)
        # float64 whatever the members' dtype: the weights are part of the model's definition
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float64))

    @property
    def energy_key(self) -> str:
        """The members' common energy key."""
        return self.members[0].qdf_config["energy_key"]

    @property
    def average_config(self) -> Dict[str, Any]:
        """Weights and member configs (JSON-serialisable)."""
        return {"weights": self.weights.tolist(), "members": [m.qdf_config for m in self.members]}

    def forward(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Run every member on its own copy of the batch; average energy, per-atom energies, forces.

        Returns the input entries plus those three averages; the members' other outputs
        (HK fields, potentials) are per member and left out. Inference code uses
        :func:`ase_qdf.predict.evaluate_batch`, which skips the HK heads; this is the full
        forward pass, for completeness and tests.
        """
        outputs = [member(dict(inputs)) for member in self.members]
        averaged = dict(inputs)
        for key in (self.energy_key, self.energy_key + "_per_atom", "forces"):
            if all(key in out for out in outputs):
                averaged[key] = sum(float(w) * out[key] for w, out in zip(self.weights, outputs))
        return averaged


def model_members(model: nn.Module) -> List[Tuple[float, nn.Module]]:
    """``(weight, member)`` pairs of a :class:`QDFAverage`; ``[(1.0, model)]`` for one model."""
    if isinstance(model, QDFAverage):
        return [(float(w), m) for w, m in zip(model.weights, model.members)]
    return [(1.0, model)]


def qdf_members(model: nn.Module) -> List[Tuple[float, nn.Module]]:
    """The ``(weight, member)`` pairs of :func:`model_members` whose representation is QDF."""
    from schnetpack_ext.representation import QDF

    return [(w, m) for w, m in model_members(model) if isinstance(m.representation, QDF)]


def model_cutoff(model: nn.Module) -> float:
    """The neighbour cutoff (Å) of a QDF model or of an average (its members share one)."""
    return float(model_members(model)[0][1].representation.cutoff)
