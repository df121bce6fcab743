"""Batch prediction with a QDF model, and the one code path that runs the model.

:func:`evaluate_batch` runs a collated SchNetPack batch through the model (forces
only on request, the Hohenberg-Kohn head never); :class:`QDFEngine` turns ASE
``Atoms`` into batches; the ASE calculator and :func:`predict` both use it.

Energy convention (eV): ``energy`` is the predicted total U0 =
atomization energy + QM9 U0 atomrefs of the atoms; ``atomization_energy`` =
``energy`` − Σ atomrefs; ``energies`` are per-atom contributions (network
output + mean per atom + atomref of the atom) that sum to ``energy``;
``forces`` = −dE/dR in eV/Å.
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import schnetpack as spk
import schnetpack.properties as properties

from schnetpack_ext.datasets import qm9pack_atomrefs_ev
from schnetpack_ext.representation import QDF

from ase_qdf.average import QDFAverage, model_cutoff, model_members, qdf_members
from ase_qdf.model_io import (
    _canonical_parts,
    _find,
    as_qdf_model,
    load_default_model,
    load_model_file_or_name,
    per_atom_key,
    prepare_model,
    resolve_device,
    resolve_dtype,
    with_lebedev_order,
)
from ase_qdf import validation
from ase_qdf.validation import InvalidMoleculeError, validate_atoms

__all__ = ["MoleculeNeighborList", "QDFEngine", "resolve_model", "resolve_model_or_exit", "evaluate_batch", "predict", "predict_energies", "QM9_ATOMREFS_EV",
           "PRECISIONS", "fragment_counts", "warn_about_fragments"]

#: QM9 U0 atomrefs (eV) indexed by atomic number (length 100)
QM9_ATOMREFS_EV = np.asarray(qm9pack_atomrefs_ev(), dtype=np.float64)

ModelLike = Union[None, str, os.PathLike, nn.Module, "QDFEngine"]


#: ``precision`` values of the prediction API -> per-call ``mixed_precision`` of the
#: QDF representation (None: the model file's own setting)
PRECISIONS = {None: None, "full": "off", "bf16": "always"}


def _mixed_precision(precision: Optional[str]) -> Optional[str]:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be None, 'full' or 'bf16', got {precision!r}")
    return PRECISIONS[precision]


def evaluate_batch(
    model: nn.Module, inputs: Dict[str, torch.Tensor], forces: bool = False, precision: Optional[str] = None
) -> Dict[str, torch.Tensor]:
    """Run a factory-built QDF model on a collated batch.

    Only the energy path runs (the HK fields and head are skipped); the forces
    module runs only when ``forces`` is true. Without forces it runs under
    ``torch.inference_mode`` (no autograd bookkeeping, in-place activations).
    Grad mode is set by a local context manager; no global torch state changes.

    Args:
        model: a model from :func:`ase_qdf.model_io.build_qdf_model` (eval mode), or a
            :class:`~ase_qdf.average.QDFAverage` of such models (each member runs on its
            own shallow copy of the batch; energies, per-atom energies and forces are
            averaged with the weights).
        inputs: a SchNetPack batch (e.g. from ``AtomsConverter``); modified in place.
        forces: compute forces (−dE/dR).
        precision: the energy functional's arithmetic: None (the model file's
            ``mixed_precision``; float32/float64 at inference unless it says
            ``"always"``), ``"full"`` (the model's dtype) or ``"bf16"`` (bfloat16
            autocast of the functional layers after the first; orbitals,
            normalisations and sums stay in full precision). See
            ``docs/benchmarks/speed.md`` for its speed and accuracy cost.

    Returns:
        ``energy`` (n_molecules,) float64 total energies with offsets,
        ``energies`` (n_atoms,) float64 per-atom energies summing to ``energy``,
        ``forces`` (n_atoms, 3) or None. All detached.
    """
    if isinstance(model, QDFAverage):
        outputs = [(weight, evaluate_batch(member, dict(inputs), forces=forces, precision=precision))
                   for weight, member in model_members(model)]
        averaged = {key: sum(weight * out[key] for weight, out in outputs) for key in ("energy", "energies")}
        averaged["forces"] = sum(weight * out["forces"] for weight, out in outputs) if forces else None
        return averaged
    config = model.qdf_config
    energy_key = config["energy_key"]
    rep, atomwise, _, add = _canonical_parts(model)
    forces_module = _find(list(model.output_modules), spk.atomistic.Forces)
    mixed_precision = _mixed_precision(precision)
    with torch.enable_grad() if forces else torch.inference_mode():
        if forces:
            inputs[properties.R].requires_grad_(True)
        for m in model.input_modules:
            inputs = m(inputs)
        if isinstance(rep, QDF):
            inputs = rep(inputs, compute_hk_fields=False, mixed_precision=mixed_precision)
        else:  # a PaiNN member: no HK fields; precision applies to the QDF functional only
            inputs = rep(inputs)
        inputs = atomwise(inputs)
        if forces:
            inputs = forces_module(inputs)
        per_atom = inputs[per_atom_key(config)].reshape(-1).to(torch.float64)
        idx_m = inputs[properties.idx_m]
        n_molecules = inputs[properties.n_atoms].shape[0]
        # total energy accumulated in float64 from the per-atom terms
        inputs[energy_key] = per_atom.new_zeros(n_molecules).index_add_(0, idx_m, per_atom)
        for pp in model.postprocessors:
            inputs = pp(inputs)
        offsets = torch.zeros_like(per_atom)
        if add is not None and add.add_mean:
            offsets = offsets + add.mean.to(torch.float64)
        if add is not None and add.add_atomrefs:
            offsets = offsets + add.atomref.to(torch.float64)[inputs[properties.Z]]
    return {
        "energy": inputs[energy_key].detach(),
        "energies": (per_atom + offsets).detach(),
        "forces": inputs["forces"].detach() if forces else None,
    }


def _module_state(model: nn.Module):
    p = next(model.parameters())
    return p.device, p.dtype


def resolve_model(model: ModelLike = None, device="auto", dtype="float32") -> nn.Module:
    """Path / registered name / module / None -> factory model on ``device`` in ``dtype``.

    None means ``$QDF_MODEL`` if set, else the shipped default model. A string that
    is no existing file but the name of a shipped model (``qdf_qm9``;
    :func:`ase_qdf.model_io.registered_names`) loads that model.

    A module that is already on the right device and dtype is used as is
    (not copied); otherwise a copy is converted, the caller's module is untouched.
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    if isinstance(model, QDFEngine):
        model = model.model
    if model is None:
        model = os.environ.get("QDF_MODEL") or None
    if model is None:
        return load_default_model(device=dev, dtype=dt)
    if isinstance(model, (str, os.PathLike)):
        return load_model_file_or_name(model, device=dev, dtype=dt)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be None, a path or a torch module, got {type(model).__name__}")
    canonical = as_qdf_model(model)
    if canonical is model:
        m_dev, m_dt = _module_state(model)
        same_dev = m_dev.type == dev.type and (dev.index is None or m_dev.index == dev.index)
        if same_dev and m_dt == dt and not model.training:
            return model
        canonical = copy.deepcopy(model)
    return prepare_model(canonical, dev, dt)


def resolve_model_or_exit(model: ModelLike = None, device="auto", dtype="float32") -> nn.Module:
    """:func:`resolve_model` for scripts: no usable model ends the script with a one-line message.

    Raises:
        SystemExit: the model file is missing or invalid (says how to pass one).
    """
    try:
        return resolve_model(model, device=device, dtype=dtype)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"No QDF model available: {err}\nPass --model PATH or set QDF_MODEL=PATH.") from None


class MoleculeNeighborList(spk.transform.NeighborListTransform):
    """Neighbour pairs of an isolated molecule from a k-d tree.

    Memory is O(atoms + pairs) whatever the molecule's extent; matscipy's cell
    binning (SchNetPack's ``MatScipyNeighborList``) takes seconds and GiB for a
    water molecule with one atom moved 10^4 Å away. Periodic input is passed on
    to ``MatScipyNeighborList``.

    With ``dtype=torch.float32`` the pair offsets (zero for a molecule) carry the
    float64 rounding correction, so that ``R[j] - R[i] + offset`` evaluated in
    float32 is the float64 pair vector rounded once: a molecule 10^9 Å from the
    origin gets the energy it gets at the origin (the positions, rounded to
    float32, would otherwise lose the geometry). Gradients with respect to the
    positions are unchanged (the offsets are constants).

    Args:
        cutoff: pair cutoff (Å).
        dtype: the dtype the positions are cast to after the neighbour search.
    """

    def __init__(self, cutoff: float, dtype: torch.dtype = torch.float64):
        super().__init__(cutoff)
        self.dtype = dtype
        self._periodic = spk.transform.MatScipyNeighborList(cutoff=cutoff)

    def _build_neighbor_list(self, Z, positions, cell, pbc, cutoff):
        if bool(pbc.any()):
            return self._periodic._build_neighbor_list(Z, positions, cell, pbc, cutoff)
        from scipy.spatial import cKDTree

        pos = positions.detach().cpu().numpy().astype(np.float64)
        pairs = np.zeros((0, 2), dtype=np.int64)
        if len(pos) > 1:
            pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray").astype(np.int64)
        i = np.concatenate([pairs[:, 0], pairs[:, 1]])
        j = np.concatenate([pairs[:, 1], pairs[:, 0]])
        order = np.lexsort((j, i))
        idx_i, idx_j = torch.from_numpy(i[order]), torch.from_numpy(j[order])
        offsets = torch.zeros(len(i), 3, dtype=positions.dtype)
        if self.dtype != torch.float64 and len(i):
            exact = positions[idx_j].double() - positions[idx_i].double()
            low = positions.to(self.dtype)
            offsets = (exact - (low[idx_j] - low[idx_i]).double()).to(positions.dtype)
        return idx_i, idx_j, offsets


class QDFEngine:
    """A loaded QDF model plus the ASE -> batch converter (neighbour list from the model).

    Args:
        model: model file path, loaded module, or None for the shipped model.
        device: ``"auto"`` (cuda if available), ``"cpu"``, ``"cuda"``, ...
        dtype: ``"float32"`` or ``"float64"``.
        precision: arithmetic of the energy functional, None (as the model file
            says), ``"full"`` or ``"bf16"`` (bfloat16 autocast: faster on CPUs
            with native bf16, see :func:`evaluate_batch`).
        lebedev_order: evaluate on a Lebedev grid of this angular order instead
            of the model's own (None). A higher order shrinks the orientation
            dependence of a ReLU model at a proportional cost (the shipped file's
            weights: about 27 meV mean on order 11, their training grid, 10 meV on
            order 17, the file's own; ``docs/model_card.md``).
            A module passed as ``model`` is copied, not changed.
    """

    def __init__(self, model: ModelLike = None, device="auto", dtype="float32", precision: Optional[str] = None,
                 lebedev_order: Optional[int] = None):
        _mixed_precision(precision)
        self.precision = precision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = resolve_model(model, self.device, self.dtype)
        if lebedev_order is not None:
            # copy only a module the caller still holds (resolve_model may return it as is)
            caller_owned = self.model is model or self.model is getattr(model, "model", None)
            self.model = with_lebedev_order(self.model, int(lebedev_order), copy_first=caller_owned)
        self.cutoff = model_cutoff(self.model)
        # the molecule-wide scale couples fragments: warn about them (decided once per model)
        self.warns_about_fragments = any(m.representation.normalisation == "molecule"
                                         for _, m in qdf_members(self.model))
        self.converter = spk.interfaces.AtomsConverter(
            neighbor_list=MoleculeNeighborList(cutoff=self.cutoff, dtype=self.dtype),
            dtype=self.dtype,
            device=self.device,
        )

    def evaluate(self, atoms_list: Sequence, forces: bool = False) -> List[Dict[str, Any]]:
        """Evaluate already validated molecules as one batch; one result dict each."""
        atoms_list = list(atoms_list)
        if not atoms_list:
            return []
        inputs = self.converter(atoms_list)
        if self.warns_about_fragments:
            warn_about_fragments(inputs, atoms_list, self.cutoff)
        out = evaluate_batch(self.model, inputs, forces=forces, precision=self.precision)
        energy = out["energy"].cpu().numpy()
        energies = out["energies"].cpu().numpy()
        force = out["forces"].cpu().to(torch.float64).numpy() if forces else None
        bounds = np.cumsum([0] + [len(a) for a in atoms_list])
        results = []
        for k, atoms in enumerate(atoms_list):
            sl = slice(bounds[k], bounds[k + 1])
            e = float(energy[k])
            results.append({
                "energy": e,
                "atomization_energy": e - float(QM9_ATOMREFS_EV[atoms.numbers].sum()),
                "energies": energies[sl].copy(),
                "forces": force[sl].copy() if forces else None,
                "error": None,
            })
        return results


def fragment_counts(inputs: Dict[str, torch.Tensor]) -> np.ndarray:
    """Pieces of every molecule of a batch: atoms joined by neighbour pairs (within the cutoff).

    Args:
        inputs: a collated SchNetPack batch with ``idx_i``, ``idx_j`` and ``idx_m``.

    Returns:
        (n_molecules,) number of connected fragments per molecule.
    """
    n_atoms = inputs[properties.Z].shape[0]
    i, j = inputs[properties.idx_i].cpu().numpy(), inputs[properties.idx_j].cpu().numpy()
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n_atoms, n_atoms))
    _, labels = connected_components(graph, directed=False)
    pieces = np.unique(np.stack([inputs[properties.idx_m].cpu().numpy(), labels], 1), axis=0)
    return np.bincount(pieces[:, 0], minlength=inputs[properties.n_atoms].shape[0])


def warn_about_fragments(inputs: Dict[str, torch.Tensor], atoms_list: Sequence, cutoff: float) -> None:
    """UserWarning naming the molecules of a batch that fall into pieces farther apart than ``cutoff``."""
    # the paper's normalisation scales the orbitals over the whole Atoms object, so that
    # separate molecules in one Atoms change each other's energies at any distance
    counts = fragment_counts(inputs)
    split = [f"{atoms_list[k].get_chemical_formula()} ({counts[k]} fragments)" for k in np.flatnonzero(counts > 1)]
    if split:
        warnings.warn(
            f"{', '.join(split[:3])}{' and more' if len(split) > 3 else ''}: atoms farther than "
            f"{cutoff:g} Å apart from the rest; this model normalises its orbitals over the whole "
            "Atoms object, which couples separate molecules at any distance (about 0.1 eV for the "
            "shipped model, docs/limitations.md): compute each molecule on its own",
            UserWarning, stacklevel=3)


def _error_result(err: BaseException) -> Dict[str, Any]:
    return {"energy": float("nan"), "atomization_energy": float("nan"), "energies": None,
            "forces": None, "error": f"{type(err).__name__}: {err}"}


def _chunks(items: List[int], sizes: List[int], batch_size: int, max_atoms: int) -> Iterator[List[int]]:
    """Consecutive runs of ``items`` with at most ``batch_size`` items and ``max_atoms`` atoms.

    A single item larger than ``max_atoms`` forms a run of its own.
    """
    chunk: List[int] = []
    n_atoms = 0
    for item, size in zip(items, sizes):
        if chunk and (len(chunk) >= batch_size or n_atoms + size > max_atoms):
            yield chunk
            chunk, n_atoms = [], 0
        chunk.append(item)
        n_atoms += size
    if chunk:
        yield chunk


def predict(
    atoms_list: Iterable,
    model: ModelLike = None,
    batch_size: int = 64,
    device="auto",
    dtype="float32",
    forces: bool = False,
    on_error: str = "raise",
    max_batch_atoms: Optional[int] = None,
    precision: Optional[str] = None,
    lebedev_order: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """Predict many molecules, batching molecules of different sizes together.

    Args:
        atoms_list: ``ase.Atoms`` objects.
        model: model file path, loaded module, :class:`QDFEngine`, or None (shipped model).
        batch_size: molecules per model call.
        device, dtype, precision, lebedev_order: see :class:`QDFEngine` (ignored when
            an engine is given).
        forces: also compute forces (eV/Å).
        on_error: ``"raise"``: the first invalid molecule or failure raises;
            ``"record"``: it gets an ``error`` string (energies NaN) and the others
            still run. A failing batch is retried molecule by molecule.
        max_batch_atoms: atoms per model call (None: :data:`ase_qdf.validation.MAX_ATOMS`);
            a batch is cut earlier when it would exceed it, so memory per call stays
            bounded whatever the number and size of the molecules. Each molecule
            must itself pass :func:`~ase_qdf.validation.validate_atoms` (size limit
            :data:`~ase_qdf.validation.MAX_ATOMS`).

    Returns:
        One dict per input, in input order: ``energy`` (eV, total U0),
        ``atomization_energy`` (eV), ``energies`` (per atom, eV), ``forces``
        ((n, 3) eV/Å or None), ``error`` (None or message).
    """
    if on_error not in ("raise", "record"):
        raise ValueError("on_error must be 'raise' or 'record'")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    budget = validation.MAX_ATOMS if max_batch_atoms is None else int(max_batch_atoms)
    if budget < 1:
        raise ValueError("max_batch_atoms must be >= 1")
    atoms_list = list(atoms_list)
    engine = model if isinstance(model, QDFEngine) else QDFEngine(model, device, dtype, precision, lebedev_order)
    results: List[Optional[Dict[str, Any]]] = [None] * len(atoms_list)
    valid = []
    for k, atoms in enumerate(atoms_list):
        try:
            validate_atoms(atoms)
            valid.append(k)
        except InvalidMoleculeError as err:
            if on_error == "raise":
                raise InvalidMoleculeError(f"molecule {k}: {err}", err.reason) from None
            results[k] = _error_result(err)
        except Exception as err:  # noqa: BLE001 - an unexpected object: recorded, not fatal
            if on_error == "raise":
                raise
            results[k] = _error_result(err)
    for chunk in _chunks(valid, [len(atoms_list[k]) for k in valid], batch_size, budget):
        try:
            outs = engine.evaluate([atoms_list[k] for k in chunk], forces=forces)
        except Exception:  # noqa: BLE001 - recorded per molecule below
            if on_error == "raise":
                raise
            outs = []
            for k in chunk:
                try:
                    outs.extend(engine.evaluate([atoms_list[k]], forces=forces))
                except Exception as single_err:  # noqa: BLE001
                    outs.append(_error_result(single_err))
        for k, out in zip(chunk, outs):
            results[k] = out
    return results


def predict_energies(
    atoms_list: Iterable,
    model: ModelLike = None,
    batch_size: int = 64,
    device="auto",
    dtype="float32",
    precision: Optional[str] = None,
    lebedev_order: Optional[int] = None,
) -> np.ndarray:
    """Total energies (eV, predicted U0 = atomization energy + QM9 atomrefs), one per molecule.

    Arguments as in :func:`predict`.

    Raises :class:`~ase_qdf.validation.InvalidMoleculeError` on the first invalid
    molecule; use :func:`predict` with ``on_error="record"`` to skip them instead.
    """
    results = predict(atoms_list, model=model, batch_size=batch_size, device=device, dtype=dtype,
                      precision=precision, lebedev_order=lebedev_order)
    return np.array([r["energy"] for r in results], dtype=np.float64)
