"""Quantum Deep Field (QDF) as a SchNetPack representation.

The representation builds an LCAO wave function from radial Gaussian atomic
orbitals, evaluates it on atom-centred quadrature grids, normalises it to the
electron count and passes it through the energy functional MLP. The pooled
functional of the grid points of each atom is the atom's
``scalar_representation``, so that a linear :class:`schnetpack.atomistic.Atomwise`
head gives the QDF energy ``E = w . sum_r h(r) + b``. The grid electron density
and the Gaussian external potential are written too, for the Hohenberg-Kohn
auxiliary task.

Cost is linear in the number of atoms: the basis of atom ``j`` is evaluated
only on the grids of atoms ``i`` in the neighbour list (cutoff
``basis_cutoff + grid_radius``), and all per-molecule normalisations are
scatter sums over the batch index.

References:
    .. [#qdf] Tsubaki, Mizoguchi. Quantum deep field: data-driven wave function,
       electron density generation, and atomization energy prediction and
       extrapolation with machine learning. Phys. Rev. Lett. 125, 206401 (2020).
    .. [#qdf2] Tsubaki, Mizoguchi. On the equivalence of molecular graph
       convolution and molecular wave function with poor basis set. NeurIPS (2020).
"""

import math
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

import schnetpack.properties as properties
import schnetpack.nn as snn

from schnetpack_ext.nn.basis import gaussian_orbitals, inverse_norm, normalised_orbitals
from schnetpack_ext.nn.grids import build_grid, lebedev_rule_of_order
from schnetpack_ext.nn.orbitals import SUPPORTED_ELEMENTS, orbital_layouts, orbital_tables

__all__ = ["QDF", "MoleculeLayout", "smooth_switch", "autocast_bf16", "bf16_enabled"]

#: keys of the grid fields written into the inputs (one row per grid point)
density_key = "density"
external_potential_key = "external_potential"
grid_weights_key = "grid_weights"
grid_atom_key = "idx_grid_atom"


ACTIVATIONS = {"silu": F.silu, "relu": F.relu, "shifted_softplus": snn.shifted_softplus}
#: in-place versions of the activations, used without autograd
_IN_PLACE = {F.silu: lambda x: F.silu(x, inplace=True), F.relu: torch.relu_}


def _lebedev_size(order: int) -> int:
    try:
        return lebedev_rule_of_order(order)[1].shape[0]
    except ValueError:
        return -1


def bf16_enabled(mode: str, training: bool) -> bool:
    """Whether mixed-precision ``mode`` computes in bfloat16: "always", or "train" while training."""
    return mode == "always" or (mode == "train" and training)


def autocast_bf16(mode: str, training: bool, device: torch.device):
    """bfloat16 autocast for ``mode`` "always", or "train" while training."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16_enabled(mode, training))


def _activate(layer: nn.Module, x: torch.Tensor, in_place: bool) -> torch.Tensor:
    """``layer.activation(x)``, overwriting ``x`` when ``in_place`` and the activation allows it."""
    if in_place and layer.activation in _IN_PLACE:
        return _IN_PLACE[layer.activation](x)
    return layer.activation(x)


def smooth_switch(d: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """1 below ``cutoff - width``, a cosine step to 0 at ``cutoff``, 0 beyond.

    Keeps the basis (and hence energy and forces) continuous when a neighbour
    crosses the cutoff.
    """
    x = ((d - (cutoff - width)) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * x))


class MoleculeLayout:
    """Atoms of a block (contiguous, ordered by molecule) padded to one row per molecule.

    Per-molecule products (the Gram matrices, the first functional layer with its
    per-molecule matrix) then run as one batched product over molecules instead of
    one tiny product per atom with a per-atom copy of the molecule's matrix.

    Args:
        idx_m: (n,) molecule index of the block's atoms, non-decreasing.
    """

    def __init__(self, idx_m: torch.Tensor):
        self.first = int(idx_m[0])
        self.molecule = idx_m - self.first  # molecule within the block
        counts = torch.bincount(self.molecule)
        self.n_molecules = counts.shape[0]
        self.max_atoms = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        self.slot = torch.arange(idx_m.shape[0], device=idx_m.device) - starts[self.molecule]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(n, ...) -> (n_molecules, max_atoms, ...), zeros in the padding."""
        out = x.new_zeros(self.n_molecules, self.max_atoms, *x.shape[1:])
        return out.index_put((self.molecule, self.slot), x)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(n_molecules, max_atoms, ...) -> (n, ...)."""
        return x[self.molecule, self.slot]


class QDF(nn.Module):
    """Quantum Deep Field representation (rotation invariant, linear cost).

    Args:
        n_atom_basis: number of molecular orbitals D (also the feature size).
        n_functional_layers: depth of the energy functional MLP (D x D layers).
        activation: activation of the functional layers, a callable or one of
            ``"silu"`` (default) and ``"relu"`` (the paper). A smooth activation
            makes the integrand smooth on the spheres, where the Lebedev rule
            then converges spectrally (rotation errors ~1e-5 relative at order
            11, against ~1e-4 with ReLU even at order 31), and gives smooth forces.
        grid: ``"lebedev"`` (rotation invariant, default) or ``"paper"``
            (the original 56-point cubic grid).
        grid_radius: radius of the grid ball around every atom (Å).
        n_radial: radial shells of the Lebedev grid.
        lebedev_order: angular order of the Lebedev grid.
        basis_cutoff: distance (Å) beyond which basis functions are zero; the
            neighbour list needs ``basis_cutoff + grid_radius`` (:attr:`cutoff`).
        switch_width: width (Å) of the smooth switch-off before ``basis_cutoff``.
        zeta_init: initial orbital exponent (Å^-2).
        zeta_min: lower bound of the exponents, ``zeta = zeta_min + softplus(theta)``,
            which keeps them positive and the orbitals inside the cutoff.
        compute_hk_fields: write grid density and external potential for the
            Hohenberg-Kohn task.
        mixed_precision: run the energy functional MLP under bfloat16 autocast
            ``"off"``, in ``"train"`` mode only, or ``"always"``. The orbitals,
            normalisations and pooled sums stay in full precision. Pays on CPUs
            with native bf16 (AVX-512 BF16/AMX) and on recent GPUs.
        orbital_scale: constant factor on the orbitals where they enter the
            energy functional (not in the density). Normalised to the electron
            count, the orbitals are small (first-layer inputs ~0.03 at D = 250),
            where a smooth activation such as SiLU is nearly linear and the
            functional learns slowly; a factor ~30 puts them on the scale where
            the activation bends. ReLU is scale free and needs none.
        normalisation: how the orbitals are normalised to the electron count.
            ``"molecule"`` (the paper): every orbital column is scaled so that
            the molecule's density integrates to its electron count; the scale
            couples all atoms of a molecule, however far apart, so that the
            energy of two distant molecules is not the sum of theirs.
            ``"local"``: the same scale computed per atom over its
            neighbourhood, ``sum_B w_AB Z_B / (D sum_B w_AB sum_{r in B} w_r
            psi_k(r)^2)`` with ``w_AB`` = :func:`smooth_switch` of the distance
            (``local_cutoff``, ``local_width``; ``w_AA`` = 1): identical to
            ``"molecule"`` when all atoms lie within ``local_cutoff -
            local_width`` of each other, and exactly additive for fragments
            farther apart than ``local_cutoff``, so the energy is a sum of
            local terms, as in SchNet or PaiNN.
        local_cutoff: neighbourhood radius of the ``"local"`` normalisation (Å;
            default and maximum: :attr:`cutoff`, the neighbour-list cutoff).
        local_width: width (Å) of its smooth switch-off.
        chunk_size: atoms per block for large systems (None: never split).
            Batches with more atoms are processed block by block, with
            activation checkpointing when gradients are needed, so peak memory
            per atom stays bounded up to 10^4 atoms and beyond. Without
            autograd the blocks hold up to :attr:`inference_chunk_size` atoms;
            with autograd, systems of up to :attr:`max_unchunked_atoms` atoms
            (a training batch) run in one block.
    """

    #: class defaults, so that models pickled before these options existed still load
    mixed_precision = "off"
    chunk_size = None
    orbital_scale = 1.0
    normalisation = "molecule"
    #: atoms per block without autograd (inference), at least ``chunk_size``: a
    #: batch of 64 QM9 molecules (~800 atoms) runs in one block, in ~0.5 GiB
    inference_chunk_size = 1024
    #: with autograd, systems up to this many atoms run as one block, without
    #: checkpointing: a QM9 training batch (32 molecules, <= 448 atoms) then runs
    #: its forward pass once instead of twice (13 % more training steps per
    #: second); larger systems (forces of 1,000+ atoms) keep the bounded blocks
    max_unchunked_atoms = 512
    #: on a CPU, the energy functional runs in blocks of atoms whose activations (n_points
    #: x D per atom) hold about this many values, so that they stay in cache (4 MiB of
    #: float32): shipped model +41 % inference in float32, +37 % in bf16, +33 %
    #: training (CPU time, 1 thread, docs/benchmarks/speed.md). Not with the padded
    #: layout (coarse grids: no gain measured there), whose
    #: first layer is a product per molecule
    block_elements = 2**20
    #: without autograd, on a CPU, the orbitals are evaluated in pieces of about this
    #: many (pairs x slots x points) values (4 MiB of float32), in cache
    #: (docs/benchmarks/speed.md, session 32)
    basis_block_elements = 2**20

    def __init__(
        self,
        n_atom_basis: int = 250,
        n_functional_layers: int = 3,
        activation: Union[str, Callable] = "silu",
        grid: str = "lebedev",
        grid_radius: float = 0.75,
        n_radial: int = 2,
        lebedev_order: int = 11,
        basis_cutoff: float = 4.0,
        switch_width: float = 1.0,
        zeta_init: float = 1.0,
        zeta_min: float = 0.5,
        compute_hk_fields: bool = True,
        mixed_precision: str = "off",
        chunk_size: Optional[int] = 128,
        orbital_scale: float = 1.0,
        normalisation: str = "molecule",
        local_cutoff: Optional[float] = None,
        local_width: float = 1.5,
    ):
        super().__init__()
        # constructor arguments, for saving the model as weights + config
        self.hyperparameters = dict(
            n_atom_basis=n_atom_basis, n_functional_layers=n_functional_layers,
            activation=activation if isinstance(activation, str) else None,
            grid=grid, grid_radius=grid_radius, n_radial=n_radial,
            lebedev_order=lebedev_order, basis_cutoff=basis_cutoff,
            switch_width=switch_width, zeta_init=zeta_init, zeta_min=zeta_min,
            compute_hk_fields=compute_hk_fields, mixed_precision=mixed_precision,
            chunk_size=chunk_size, orbital_scale=orbital_scale,
            normalisation=normalisation, local_cutoff=local_cutoff, local_width=local_width,
        )
        self.chunk_size = chunk_size
        if normalisation not in ("molecule", "local"):
            raise ValueError("normalisation must be molecule or local")
        self.normalisation = normalisation
        if local_cutoff is None:
            local_cutoff = basis_cutoff + grid_radius
        if not 0.0 < local_width <= local_cutoff <= basis_cutoff + grid_radius:
            raise ValueError("need 0 < local_width <= local_cutoff <= basis_cutoff + grid_radius "
                             "(the neighbour list holds no farther pairs)")
        self.local_cutoff, self.local_width = float(local_cutoff), float(local_width)
        if not (math.isfinite(orbital_scale) and orbital_scale > 0):
            raise ValueError("orbital_scale must be a positive number")
        self.orbital_scale = float(orbital_scale)
        if mixed_precision not in ("off", "train", "always"):
            raise ValueError("mixed_precision must be off, train or always")
        self.mixed_precision = mixed_precision
        if not 0.0 <= zeta_min < zeta_init:
            raise ValueError("need 0 <= zeta_min < zeta_init")
        self.n_atom_basis = n_atom_basis
        self.grid_kind = grid
        self.grid_radius = grid_radius
        self.basis_cutoff = basis_cutoff
        self.switch_width = min(switch_width, basis_cutoff)
        self.zeta_min = zeta_min
        self.compute_hk_fields = compute_hk_fields

        offsets, weights = build_grid(grid, grid_radius, n_radial, lebedev_order)
        self.register_buffer("grid_offsets", offsets.float())
        self.register_buffer("grid_weights", weights.float())

        tables = orbital_tables()
        self.n_orbital_types = tables.n_types
        self.register_buffer("element_index", tables.element_index, persistent=False)
        self.register_buffer("type_index", tables.type_index, persistent=False)
        self.register_buffer(
            "second_shell", tables.second_shell.float(), persistent=False
        )
        self.register_buffer("orbital_mask", tables.mask.float(), persistent=False)
        # pairs are evaluated per slot layout of their atom j (hydrogen: 4 slots, not 14)
        self.register_buffer("layout_index", tables.layout_index, persistent=False)
        self.layouts = tables.layouts

        # exponents stay above zeta_min (positivity, and support inside the cutoff)
        theta0 = math.log(math.expm1(zeta_init - zeta_min))
        self.zeta_raw = nn.Parameter(torch.full((tables.n_types,), theta0))
        # LCAO coefficient vector per orbital type ("embedding" init as in the paper)
        self.coefficients = nn.Parameter(torch.randn(tables.n_types, n_atom_basis))
        if isinstance(activation, str):
            if activation not in ACTIVATIONS:
                raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
            activation = ACTIVATIONS[activation]
        self.functional = nn.Sequential(
            *[
                snn.Dense(n_atom_basis, n_atom_basis, activation=activation)
                for _ in range(n_functional_layers)
            ]
        )

    def __setstate__(self, state):
        # models pickled before ``hyperparameters`` existed: recover them from
        # the module itself, so that they can still be exported as weights + config
        super().__setstate__(state)
        if "hyperparameters" not in self.__dict__:
            self.hyperparameters = self._recover_hyperparameters()
        if "layout_index" not in self._buffers:  # pickled before the per-layout orbitals
            layout_index, self.layouts = orbital_layouts(self.orbital_mask, self.second_shell)
            self.register_buffer("layout_index", layout_index.to(self.orbital_mask.device), persistent=False)

    def _recover_hyperparameters(self) -> Dict:
        activation = {fn: name for name, fn in ACTIVATIONS.items()}.get(self.functional[0].activation)
        n_points = self._buffers["grid_offsets"].shape[0]
        n_radial, lebedev_order = 2, 11
        if self.grid_kind == "lebedev":
            candidates = [(r, o) for o in range(3, 32, 2) for r in range(1, 9)
                          if r * _lebedev_size(o) == n_points]
            offsets = self._buffers["grid_offsets"].double()
            for r, o in candidates:
                trial, _ = build_grid("lebedev", self.grid_radius, r, o)
                if trial.shape == offsets.shape and torch.allclose(trial, offsets, atol=1e-6):
                    n_radial, lebedev_order = r, o
                    break
        return dict(
            n_atom_basis=self.n_atom_basis, n_functional_layers=len(self.functional),
            activation=activation, grid=self.grid_kind, grid_radius=self.grid_radius,
            n_radial=n_radial, lebedev_order=lebedev_order, basis_cutoff=self.basis_cutoff,
            switch_width=self.switch_width, zeta_init=1.0, zeta_min=self.zeta_min,
            compute_hk_fields=self.compute_hk_fields, mixed_precision=self.mixed_precision,
            chunk_size=self.chunk_size, orbital_scale=self.orbital_scale,
            normalisation="molecule", local_cutoff=None, local_width=1.5,
        )

    @property
    def cutoff(self) -> float:
        """Neighbour-list cutoff the representation needs (Å)."""
        return self.basis_cutoff + self.grid_radius

    @property
    def zeta(self) -> torch.Tensor:
        """Orbital exponents per orbital type (Å^-2)."""
        return self.zeta_min + F.softplus(self.zeta_raw)

    def set_lebedev_order(self, order: int, n_radial: Optional[int] = None) -> None:
        """Evaluate the energy functional on another Lebedev grid.

        The model approximates the integral of the functional over the balls around
        the atoms; a higher angular order integrates it more exactly (smaller
        orientation dependence) at a proportional cost, without new parameters. A
        model trained on one order can be evaluated on a higher one: its
        predictions change by less than its error, while the rotation error
        shrinks (measured in ``docs/model_card.md``).

        Args:
            order: angular order of the Lebedev rule (odd, 3..131).
            n_radial: Gauss-Legendre shells (default: unchanged).
        """
        if self.grid_kind != "lebedev":
            raise ValueError("only a Lebedev grid has an order; this model uses the paper grid")
        n_radial = self.hyperparameters["n_radial"] if n_radial is None else n_radial
        offsets, weights = build_grid("lebedev", self.grid_radius, n_radial, order)
        self.grid_offsets = offsets.to(self.grid_offsets)
        self.grid_weights = weights.to(self.grid_weights)
        self.hyperparameters = dict(self.hyperparameters, lebedev_order=order, n_radial=n_radial)

    @property
    def n_grid_points(self) -> int:
        """Grid points per atom."""
        return self.grid_offsets.shape[0]

    def element_rows(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """Row of every atom in the orbital tables; rejects unknown elements."""
        if atomic_numbers.numel() and (
            atomic_numbers.min() < 0 or atomic_numbers.max() > 118
        ):
            raise ValueError("atomic numbers must lie in 0..118")
        rows = self.element_index[atomic_numbers]
        if (rows < 0).any():
            bad = sorted(set(atomic_numbers[rows < 0].tolist()))
            raise ValueError(
                f"QDF has no orbitals for atomic number(s) {bad}; "
                f"supported: {list(SUPPORTED_ELEMENTS)}"
            )
        return rows

    def basis(
        self, d2: torch.Tensor, rows_j: torch.Tensor
    ) -> torch.Tensor:
        """Atomic orbitals of atom j on grid points at squared distance ``d2``.

        ``phi = d^(q-1) exp(-zeta d^2)``, switched off smoothly at the cutoff;
        a point exactly on the nucleus (d = 0) counts as far, as in the paper.

        Args:
            d2: (n_pairs, n_points) squared distances (Å^2).
            rows_j: (n_pairs,) orbital-table row of atom j.

        Returns:
            (n_pairs, max_orbitals, n_points) basis values (0 in empty slots);
            points last, so the per-type sums below read contiguous rows.
        """
        shells, zeta, second_shell, mask = self._radial_inputs(d2, rows_j)
        return gaussian_orbitals(zeta, d2, shells, second_shell, mask)

    def _shell_factors(self, d2: torch.Tensor):
        """(envelope, d): the smooth switch (0 on the nucleus) and the distance, (n_pairs, n_points) each."""
        on_nucleus = d2 <= 0
        d = torch.sqrt(torch.where(on_nucleus, torch.ones_like(d2), d2))
        d = torch.where(on_nucleus, torch.zeros_like(d), d)
        return smooth_switch(d, self.basis_cutoff, self.switch_width) * (~on_nucleus), d

    def _radial_inputs(self, d2: torch.Tensor, rows_j: torch.Tensor, n_slots: Optional[int] = None):
        """Shell factors (envelope and d * envelope) and per-slot exponents, shells and mask of the pairs.

        ``n_slots``: only the first slots (pairs of one orbital layout, :attr:`layouts`).
        """
        envelope, d = self._shell_factors(d2)
        shells = torch.stack([envelope, envelope * d], 1)  # d^(q-1) envelope for q = 1, 2
        slots = slice(None) if n_slots is None else slice(0, n_slots)
        zeta = self.zeta[self.type_index[rows_j, slots]]  # (P, O)
        return shells, zeta, self.second_shell[rows_j, slots] > 0, self.orbital_mask[rows_j, slots]

    def _pairs_by_layout(self, rows_j: torch.Tensor):
        """``(pair indices, n_slots, runs)`` for every orbital layout among the pairs."""
        if len(self.layouts) == 1:
            yield torch.arange(rows_j.shape[0], device=rows_j.device), *self.layouts[0]
            return
        layout_of_pair = self.layout_index[rows_j]
        for k, (n_slots, runs) in enumerate(self.layouts):
            pairs = torch.nonzero(layout_of_pair == k).squeeze(1)
            if pairs.numel():
                yield pairs, n_slots, runs

    def _orbitals_without_grad(self, r_ij: torch.Tensor, rows_j: torch.Tensor, keep: bool):
        """Unnormalised orbitals of the pairs, piece by piece, without autograd.

        On a CPU, pieces hold about :attr:`basis_block_elements` values and the orbital
        chain (exponent product, exp, shell factors, squares) runs on each in place, in
        cache, instead of ~10 passes over batch-sized (pairs x slots x points) tensors;
        on other devices each layout is one piece.

        Args:
            r_ij: (n_pairs, 3) vectors R_j - R_i (Å).
            rows_j: (n_pairs,) orbital-table row of atom j.
            keep: every piece in its own memory (the caller keeps them); otherwise one
                scratch buffer is reused, valid until the next piece.

        Yields:
            ``(pairs, phi)``: indices into the pairs and their orbitals
            (len(pairs), n_slots, n_points), the layout's slots only.
        """
        n_points = self.n_grid_points
        zeta_of_type = self.zeta.to(r_ij.dtype)
        scratch = None
        for pairs, n_slots, runs in self._pairs_by_layout(rows_j):
            step = max(1, self.basis_block_elements // (n_slots * n_points))
            if r_ij.device.type != "cpu":
                step = max(1, pairs.shape[0])  # a GPU wants few large kernels, not cache-sized ones
            kept = r_ij.new_empty(pairs.shape[0], n_slots, n_points) if keep else None
            if not keep and (scratch is None or scratch.numel() < step * n_slots * n_points):
                scratch = r_ij.new_empty(step * n_slots * n_points)
            for p0 in range(0, pairs.shape[0], step):
                piece = pairs[p0:p0 + step]
                rows = rows_j[piece]
                phi = kept[p0:p0 + step] if keep else scratch[:piece.shape[0] * n_slots * n_points].view(
                    piece.shape[0], n_slots, n_points)
                d2 = self.grid_distances2(r_ij[piece])
                envelope, d = self._shell_factors(d2)
                zeta = zeta_of_type[self.type_index[rows, :n_slots]]
                torch.mul(zeta[:, :, None], d2[:, None, :], out=phi).neg_().exp_()
                for first, end, second in runs:
                    phi[:, first:end].mul_((envelope * d if second else envelope)[:, None, :])
                yield piece, phi

    def _add_typed(self, typed: torch.Tensor, phi: torch.Tensor, rows_j, local_i) -> torch.Tensor:
        """Add orbitals ``phi`` (pairs, n_slots, n_points) into their rows of ``typed`` (n_local * n_types, n_points)."""
        n_types, n_points = self.n_orbital_types, phi.shape[2]
        target_rows = (local_i[:, None] * n_types + self.type_index[rows_j, :phi.shape[1]]).reshape(-1)
        return typed.index_add_(0, target_rows, phi.reshape(-1, n_points))

    def grid_distances2(self, r_ij: torch.Tensor) -> torch.Tensor:
        """(n_pairs, n_points) squared distances of the grid points of atom i from atom j (Å^2)."""
        offsets = self.grid_offsets.to(r_ij.dtype)
        # grid point R_i + s seen from atom j: s - R_ij
        return ((offsets[None, :, :] - r_ij[:, None, :]) ** 2).sum(-1)

    def _orbital_norm2(self, r_ij, rows_j, idx_j, n_atoms: int) -> torch.Tensor:
        """Contribution of these pairs to sum_g w phi^2 per orbital (j, slot): (n_atoms, max_orbitals)."""
        if not torch.is_grad_enabled():
            return self._norm2_of_pieces(self._orbitals_without_grad(r_ij, rows_j, keep=False), idx_j, n_atoms, r_ij)
        weights = self.grid_weights.to(r_ij.dtype)
        norm2 = r_ij.new_zeros(n_atoms, self.orbital_mask.shape[1])
        for pairs, n_slots, _ in self._pairs_by_layout(rows_j):
            phi = self._layout_orbitals(r_ij[pairs], rows_j[pairs], n_slots)
            part = phi.new_zeros(n_atoms, n_slots).index_add_(0, idx_j[pairs], (phi * phi) @ weights)
            norm2 = norm2 + F.pad(part, (0, norm2.shape[1] - n_slots))
        return norm2

    def _norm2_of_pieces(self, pieces, idx_j, n_atoms: int, like: torch.Tensor) -> torch.Tensor:
        """sum_g w phi^2 per orbital (j, slot), (n_atoms, max_orbitals), of ``(pairs, phi)`` pieces without autograd."""
        weights = self.grid_weights.to(like.dtype)
        norm2 = like.new_zeros(n_atoms, self.orbital_mask.shape[1])
        for pairs, phi in pieces:
            norm2[:, :phi.shape[1]].index_add_(0, idx_j[pairs], (phi * phi) @ weights)
        return norm2

    def _add_typed_pieces(self, typed: torch.Tensor, pieces, inv_norm_pairs, rows_j, local_i) -> torch.Tensor:
        """Scale ``(pairs, phi)`` pieces by their pairs' inverse norms, in place, and add them per type into ``typed``."""
        for pairs, phi in pieces:
            phi.mul_(inv_norm_pairs[pairs, :phi.shape[1], None])
            self._add_typed(typed, phi, rows_j[pairs], local_i[pairs])
        return typed

    def _layout_orbitals(self, r_ij: torch.Tensor, rows_j: torch.Tensor, n_slots: int) -> torch.Tensor:
        """Unnormalised orbitals (pairs, n_slots, n_points) of pairs of one layout, differentiable."""
        d2 = self.grid_distances2(r_ij)
        shells, zeta, second_shell, mask = self._radial_inputs(d2, rows_j, n_slots)
        return gaussian_orbitals(zeta, d2, shells, second_shell, mask)

    def _typed_basis(self, phi, rows_j, local_i, n_local: int) -> torch.Tensor:
        """Normalised basis ``phi`` summed per orbital type on the grids of ``n_local`` atoms.

        Returns:
            (n_local, n_points, n_types): sum over the orbitals of each type.
        """
        n_types, n_points = self.n_orbital_types, phi.shape[2]
        typed = self._add_typed(phi.new_zeros(n_local * n_types, n_points), phi, rows_j, local_i)
        return typed.view(n_local, n_types, n_points).transpose(1, 2)

    def _chunk_typed_basis(self, r_ij, rows_j, local_i, inv_norm_pairs, n_local: int):
        """Typed basis (n_local, n_points, n_types) of a block of grid atoms, given the inverse norms of the pairs."""
        n_types, n_points = self.n_orbital_types, self.n_grid_points
        typed = r_ij.new_zeros(n_local * n_types, n_points)
        if not torch.is_grad_enabled():
            self._add_typed_pieces(typed, self._orbitals_without_grad(r_ij, rows_j, keep=False), inv_norm_pairs,
                                   rows_j, local_i)
        else:
            for pairs, n_slots, _ in self._pairs_by_layout(rows_j):
                phi = self._layout_orbitals(r_ij[pairs], rows_j[pairs], n_slots)
                self._add_typed(typed, phi * inv_norm_pairs[pairs, :n_slots, None], rows_j[pairs], local_i[pairs])
        return typed.view(n_local, n_types, n_points).transpose(1, 2)

    def _single_block_typed_basis(self, r_ij, rows_j, idx_i, idx_j, n_atoms: int) -> torch.Tensor:
        """Typed basis (n_atoms, n_points, n_types) when all pairs form one block: orbitals computed once."""
        n_types, n_points = self.n_orbital_types, self.n_grid_points
        typed = r_ij.new_zeros(n_atoms * n_types, n_points)
        if not torch.is_grad_enabled():
            pieces = list(self._orbitals_without_grad(r_ij, rows_j, keep=True))
            inv_norm = inverse_norm(self._norm2_of_pieces(pieces, idx_j, n_atoms, r_ij))
            self._add_typed_pieces(typed, pieces, inv_norm[idx_j], rows_j, idx_i)
        else:
            weights = self.grid_weights.to(r_ij.dtype)
            # normalisation over the molecule grid, per orbital (j, slot), fused with one
            # backward pass (the pair tensors are the largest of the model); training on
            # forces (SchNetPack's Forces builds their graph in training mode)
            # differentiates them again and needs the twice-differentiable form. The
            # norm of (j, slot) sums the pairs of atom j only, all of one layout
            for pairs, n_slots, _ in self._pairs_by_layout(rows_j):
                d2 = self.grid_distances2(r_ij[pairs])
                shells, zeta, second_shell, mask = self._radial_inputs(d2, rows_j[pairs], n_slots)
                phi, _ = normalised_orbitals(zeta, d2, shells, second_shell, mask, weights, idx_j[pairs], n_atoms,
                                             twice_differentiable=d2.requires_grad and self.training)
                self._add_typed(typed, phi, rows_j[pairs], idx_i[pairs])
        return typed.view(n_atoms, n_types, n_points).transpose(1, 2)

    def _pooled_functional(self, basis_by_type, projected, bias, mixed_precision: Optional[str] = None,
                           layout: Optional[MoleculeLayout] = None,
                           molecule_index: Optional[torch.Tensor] = None, per_atom: bool = False) -> torch.Tensor:
        """Energy functional on the grids of some atoms, pooled per atom.

        The atoms run in blocks of about :attr:`block_elements` activations.
        Without autograd (inference) the bias and the activations are applied in
        place, so no extra buffer is allocated per layer. The values are the same.

        Args:
            basis_by_type: (n, n_points, n_types), or
                (n_molecules, max_atoms, n_points, n_types) padded by ``layout``.
            projected: (n_types, D) for one molecule, or (n_molecules, n_types, D)
                with ``layout`` or ``molecule_index``: the molecules' coefficients
                through the first functional layer.
            bias: bias of the first functional layer.
            mixed_precision: bfloat16 autocast mode of layers 2.. (default:
                :attr:`mixed_precision`).
            layout: the padding of ``basis_by_type`` (None: unpadded).
            molecule_index: (n,) row of ``projected`` of every atom (unpadded).
            per_atom: ``projected`` is (n, n_types, D), one matrix per row of
                ``basis_by_type`` (the local normalisation).
        """
        mode = self.mixed_precision if mixed_precision is None else mixed_precision
        first, rest = self.functional[0], self.functional[1:]
        in_place = not torch.is_grad_enabled()
        block = max(1, self.block_elements // (basis_by_type.shape[-2] * first.weight.shape[0]))
        if layout is None and basis_by_type.device.type == "cpu" and basis_by_type.shape[0] > block:
            # blocks of atoms whose activations stay in the CPU's cache (a GPU wants
            # the large products instead): every layer reads what
            # the previous one wrote from cache instead of memory (and fresh pages of
            # a batch-sized buffer cost more than some of the products); under
            # autograd each block keeps its own activations for the backward pass.
            # Split, not sliced (one concatenating backward, not a zero-filled
            # batch-sized gradient per block), and each block gathers its atoms'
            # (T x D) matrices from the per-molecule ones, so that the batch-sized
            # per-atom copy and its gradient are never built
            basis_blocks = torch.split(basis_by_type, block)
            molecule_blocks = ([None] * len(basis_blocks) if molecule_index is None
                               else torch.split(molecule_index, block))
            # per-atom matrices are split alongside: a gather from the whole (n, T, D)
            # tensor would cost a zero-filled (n, T, D) gradient per block, quadratic in n
            projected_blocks = torch.split(projected, block) if per_atom else [projected] * len(basis_blocks)
            return torch.cat([
                self._pooled_functional(basis_block, projected_block, bias, mixed_precision, None, molecule_block,
                                        per_atom)
                for basis_block, projected_block, molecule_block in zip(basis_blocks, projected_blocks,
                                                                        molecule_blocks)
            ])
        dtype = basis_by_type.dtype
        if in_place and bf16_enabled(mode, self.training):
            # bf16 inference: the first layer in bf16 as well. Its output is rounded
            # to bf16 for layer 2 anyway, and a float32 product followed by a cast
            # of the (n, n_points, D) result cost 3.6x more. (Training keeps it in
            # float32, the precision its gradients were validated with.)
            basis_by_type, projected, bias = basis_by_type.bfloat16(), projected.bfloat16(), bias.bfloat16()
        if molecule_index is not None:
            projected = projected[molecule_index]  # (n, T, D)
        if layout is None:
            hidden = torch.matmul(basis_by_type, projected)
        else:
            # one (max_atoms * n_points, T) x (T, D) product per molecule, then
            # back to one row block per atom (the padding is dropped here)
            n_mol, max_atoms, n_points, n_types = basis_by_type.shape
            hidden = torch.bmm(basis_by_type.view(n_mol, max_atoms * n_points, n_types), projected)
            hidden = layout.unpad(hidden.view(n_mol, max_atoms, n_points, -1))
        hidden = _activate(first, hidden.add_(bias) if in_place else hidden + bias, in_place)
        with autocast_bf16(mode, self.training, hidden.device):
            for layer in rest:
                hidden = _activate(layer, F.linear(hidden, layer.weight, layer.bias), in_place)
        weights = self.grid_weights.to(dtype)
        # quadrature pooling per atom, a (1 x n_points) x (n_points x D) product per
        # atom in full precision (bf16 activations are promoted first, within a block
        # of atoms on a CPU); weights on the left read ``hidden`` as it lies (hidden^T w
        # copied it first: 10x slower)
        return torch.matmul(weights, hidden.to(dtype))

    def forward(
        self,
        inputs: Dict[str, torch.Tensor],
        compute_hk_fields: Optional[bool] = None,
        mixed_precision: Optional[str] = None,
    ) -> Dict[str, torch.Tensor]:
        """Write ``scalar_representation`` (and the HK grid fields) into ``inputs``.

        Args:
            inputs: a SchNetPack batch with neighbour pairs and ``Rij``.
            compute_hk_fields: per-call override of :attr:`compute_hk_fields`
                (e.g. False for energy-only inference), without touching the
                module, so one model can serve several threads.
            mixed_precision: per-call override of :attr:`mixed_precision`
                (``"off"``, ``"train"`` or ``"always"``), e.g. ``"always"`` for
                bfloat16 inference with a model trained in float32.
        """
        if mixed_precision not in (None, "off", "train", "always"):
            raise ValueError("mixed_precision must be None, off, train or always")
        if compute_hk_fields is None:
            compute_hk_fields = self.compute_hk_fields
        atomic_numbers = inputs[properties.Z]
        idx_m = inputs[properties.idx_m]
        n_atoms = atomic_numbers.shape[0]
        n_molecules = int(inputs[properties.n_atoms].shape[0])
        rows = self.element_rows(atomic_numbers)

        # pairs (i, j): the basis of atom j on the grid of atom i; self pairs included
        atoms = torch.arange(n_atoms, device=atomic_numbers.device)
        idx_i = torch.cat([inputs[properties.idx_i], atoms])
        idx_j = torch.cat([inputs[properties.idx_j], atoms])
        r_ij = inputs[properties.Rij]
        r_ij = torch.cat([r_ij, r_ij.new_zeros(n_atoms, 3)])
        weights = self.grid_weights.to(r_ij.dtype)
        n_points = weights.shape[0]
        rows_j = rows[idx_j]
        chunk = self.chunk_size or n_atoms
        if not torch.is_grad_enabled():
            # no activations are kept: larger blocks fit, and a batch in one block
            # computes its basis once instead of twice (norms, then typed basis)
            chunk = max(chunk, self.inference_chunk_size)
        elif n_atoms <= self.max_unchunked_atoms:
            chunk = max(chunk, n_atoms)
        single_chunk = n_atoms <= chunk
        # large systems: blocks of grid atoms, recomputed in the backward pass
        # instead of stored (activation checkpointing), so memory stays bounded
        remat = (not single_chunk) and torch.is_grad_enabled()

        def run(fn, *args):
            return checkpoint(fn, *args, use_reentrant=False) if remat else fn(*args)

        if single_chunk:
            # 1. orbitals normalised over the molecule grid, summed per orbital type
            blocks = [(0, n_atoms, 0, idx_i.shape[0])]
            typed_blocks = [self._single_block_typed_basis(r_ij, rows_j, idx_i, idx_j, n_atoms)]
        else:
            order = torch.argsort(idx_i)
            idx_i, idx_j, r_ij, rows_j = idx_i[order], idx_j[order], r_ij[order], rows_j[order]
            starts = torch.arange(0, n_atoms + chunk, chunk, device=atoms.device).clamp(max=n_atoms)
            bounds = torch.searchsorted(idx_i, starts).tolist()
            starts = starts.tolist()
            blocks = [(starts[k], starts[k + 1], bounds[k], bounds[k + 1])
                      for k in range(len(starts) - 1) if starts[k] < starts[k + 1]]
            # split, not slice: one backward that concatenates the block
            # gradients instead of a zero-filled full-size gradient per block
            r_blocks = torch.split(r_ij, [p1 - p0 for _, _, p0, p1 in blocks])
            norm2 = sum(run(self._orbital_norm2, r_blk, rows_j[p0:p1], idx_j[p0:p1], n_atoms)
                        for r_blk, (_, _, p0, p1) in zip(r_blocks, blocks))
            inv_norm = inverse_norm(norm2)
            typed_blocks = [
                run(self._chunk_typed_basis, r_blk, rows_j[p0:p1], idx_i[p0:p1] - a0,
                    inv_norm[idx_j[p0:p1]], a1 - a0)
                for r_blk, (a0, a1, p0, p1) in zip(r_blocks, blocks)
            ]
        n_types = self.n_orbital_types

        # 2.+3. molecular orbitals psi = B @ (coefficients * scale_m), B the
        # normalised basis summed per orbital type (typed_blocks, per block of
        # grid atoms). The column normalisation of the coefficients is a
        # per-orbital scale that the electron-count normalisation removes
        # again, so only the latter is applied. Its norms follow from the
        # per-molecule Gram matrix sum_g w B B^T (T x T), so the D-dimensional
        # orbitals are never built before the first functional layer.
        gram_molecule = r_ij.new_zeros(n_molecules, n_types, n_types, dtype=torch.float64)
        # Several molecules on a coarse grid (n_points <= T): the typed basis padded
        # per molecule (MoleculeLayout), so that the Gram matrices and the first
        # layer are a few large products per molecule instead of tiny ones per atom
        # (7-14 % faster inference at 14 points). On finer grids the per-atom products win:
        # the padded layout copies (n, n_points, D) values, the per-atom one (n, T, D).
        local = self.normalisation == "local"
        padded_layout = n_molecules > 1 and n_points <= n_types and not local
        layouts = [MoleculeLayout(idx_m[a0:a1]) if padded_layout else None for a0, a1, _, _ in blocks]
        typed_blocks = [typed if layout is None else layout.pad(typed)
                        for typed, layout in zip(typed_blocks, layouts)]
        atom_norm2 = []  # "local": sum_{r in A} w psi_k^2 before scaling, per atom (n, D)
        if local:
            # c_k^T G_A c_k for all atoms and orbitals as one (n, T*T) x (T*T, D) product
            outer = self.coefficients.to(r_ij.dtype)
            outer = (outer[:, None, :] * outer[None, :, :]).reshape(n_types * n_types, -1)
        for typed, layout, (a0, a1, _, _) in zip(typed_blocks, layouts, blocks):
            if layout is None:
                gram = torch.bmm((typed * weights[None, :, None]).transpose(1, 2), typed)  # (n, T, T)
                if local:
                    atom_norm2.append(torch.matmul(gram.reshape(gram.shape[0], -1), outer).double())
                else:
                    gram_molecule.index_add_(0, idx_m[a0:a1], gram.double())  # float64 sums
            else:
                rows = typed.view(layout.n_molecules, -1, n_types)
                row_weights = weights.repeat(layout.max_atoms)
                gram = torch.bmm((rows * row_weights[None, :, None]).transpose(1, 2), rows)  # (m, T, T)
                gram_molecule[layout.first:layout.first + layout.n_molecules] += gram.double()
        if local:
            # the same electron-count scale, summed over each atom's neighbourhood
            # (smooth weights of the pair distance, self pairs included) instead of
            # over the molecule: (n, T, D) coefficients, one set per atom
            pair_weights = smooth_switch(torch.linalg.vector_norm(r_ij, dim=-1).double(),
                                         self.local_cutoff, self.local_width)
            atom_norm2 = torch.cat(atom_norm2)
            norm2_orbitals = atom_norm2.new_zeros(n_atoms, self.n_atom_basis)
            norm2_orbitals.index_add_(0, idx_i, pair_weights[:, None] * atom_norm2[idx_j])
            n_electrons = norm2_orbitals.new_zeros(n_atoms)
            n_electrons.index_add_(0, idx_i, pair_weights * atomic_numbers[idx_j].double())
        else:
            coefficients = self.coefficients.double()
            norm2_orbitals = (torch.matmul(gram_molecule, coefficients) * coefficients).sum(1)
            n_electrons = norm2_orbitals.new_zeros(n_molecules)
            n_electrons.index_add_(0, idx_m, atomic_numbers.double())
        scale = torch.sqrt(n_electrons[:, None] / (self.n_atom_basis * norm2_orbitals))
        # (M, T, D), or (n, T, D) with "local" (built in the model's dtype: n x T x D values)
        if local:
            molecule_coefficients = self.coefficients.to(r_ij.dtype)[None] * scale.to(r_ij.dtype)[:, None, :]
        else:
            molecule_coefficients = (coefficients[None] * scale[:, None, :]).to(r_ij.dtype)

        # energy functional; its first layer acts on the typed basis directly:
        # W psi = B (C_m W^T), with C_m W^T a (T x D) matrix per molecule; the
        # orbital scale is folded into that small matrix
        first = self.functional[0]
        projected = torch.matmul(molecule_coefficients, first.weight.t()) * self.orbital_scale  # (M, T, D)
        pooled = []
        if local:
            # one (T x D) matrix per atom, split by block (see _pooled_functional)
            projected_by_block = torch.split(projected, [a1 - a0 for a0, a1, _, _ in blocks])
        for k, (typed, layout, (a0, a1, _, _)) in enumerate(zip(typed_blocks, layouts, blocks)):
            molecule_index = None
            if layout is not None:
                per_molecule = projected[layout.first:layout.first + layout.n_molecules]
            elif local:
                per_molecule = projected_by_block[k]
            elif n_molecules == 1:
                per_molecule = projected[0]
            else:
                per_molecule, molecule_index = projected, idx_m[a0:a1]
            pooled.append(run(self._pooled_functional, typed, per_molecule, first.bias, mixed_precision, layout,
                              molecule_index, local))
        inputs["scalar_representation"] = torch.cat(pooled) if len(pooled) > 1 else pooled[0]

        if compute_hk_fields:
            # rho = sum_k psi_k^2 = B^T (C_m C_m^T) B per grid point
            density_matrix = torch.matmul(molecule_coefficients, molecule_coefficients.transpose(1, 2))
            density = []
            for typed, layout, (a0, a1, _, _) in zip(typed_blocks, layouts, blocks):
                typed = typed if layout is None else layout.unpad(typed)
                if local:
                    per_atom = density_matrix[a0:a1]
                else:
                    per_atom = density_matrix[0] if n_molecules == 1 else density_matrix[idx_m[a0:a1]]
                density.append((torch.matmul(typed, per_atom) * typed).sum(-1))
            inputs[density_key] = torch.cat(density).reshape(-1)
            # Gaussian external potential V(r) = -sum_A Z_A exp(-|r - R_A|^2):
            # a target computed from the molecule, hence no gradient
            with torch.no_grad():
                potential = r_ij.new_zeros(n_atoms, n_points)
                for a0, a1, p0, p1 in blocks:
                    d2_block = self.grid_distances2(r_ij[p0:p1])
                    charges = atomic_numbers[idx_j[p0:p1]].to(r_ij.dtype)
                    potential.index_add_(0, idx_i[p0:p1], -charges[:, None] * torch.exp(-d2_block))
            inputs[external_potential_key] = potential.reshape(-1)
            inputs[grid_weights_key] = weights.repeat(n_atoms)
            inputs[grid_atom_key] = atoms.repeat_interleave(n_points)
        return inputs
