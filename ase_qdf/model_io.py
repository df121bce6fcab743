"""A safe file format for trained QDF models, and the one factory that builds them.

A model file is a plain ``torch.save`` of a dictionary that holds only tensors,
strings, numbers, lists and dicts, so it loads with ``torch.load(weights_only=True)``:
no pickled Python objects, no code runs on load::

    {"format": "ase-qdf-model", "format_version": 1,
     "config": {"representation": {...}, "hk": {...} | None, "energy_key": "energy_U0",
                "atomwise": {"n_in": D, "n_layers": 1, ...}, "offsets": {...} | None},
     "state_dict": {...}, "weights_sha256": "...", "metadata": {...}}

An average of several models (:class:`ase_qdf.average.QDFAverage`) is format
version 2: each member keeps its own config, state dict and weights hash, and the
weights of the average are stored beside them::

    {"format": "ase-qdf-model", "format_version": 2, "kind": "average",
     "weights": [w_1, ..., w_K],
     "members": [{"config": {...}, "state_dict": {...}, "weights_sha256": "..."}, ...],
     "metadata": {...}}

Single models are still written as version 1, so older ase-qdf releases read them.

A file may also hold SchNetPack's PaiNN (Schütt, Unke, Gastegger, ICML 2021), alone or as
a member of an average beside QDF models (``qdf_qm9_hybrid``): its ``representation``
config says ``"architecture": "painn"``, it has no HK head, and everything else is as
for QDF. Such files are format version 3, so that older readers refuse them by their
version instead of by an unknown key.

``weights_sha256`` is a SHA-256 over the state dict (names, dtypes, shapes, bytes)
and is checked on every load; a registry (``ase_qdf/models/registry.json``) records
the SHA-256 of the shipped file itself.

SchNetPack's own ``best_model`` and Lightning checkpoints pickle whole modules;
loading them runs arbitrary code, so :func:`export_spk_model` converts them only
on explicit request (``trust_pickle=True``).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

import schnetpack as spk
import schnetpack.nn as snn

from schnetpack_ext.atomistic import HKPotential
from schnetpack_ext.datasets import qm9pack_atomrefs_ev
from schnetpack_ext.representation import QDF

from ase_qdf.average import QDFAverage, check_average_weights, model_members, qdf_members

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "UntrustedPickleError",
    "build_qdf_model",
    "default_config",
    "default_model_path",
    "export_spk_model",
    "file_sha256",
    "is_painn_config",
    "lebedev_order_of",
    "load_model_file_or_name",
    "load_qdf_model",
    "load_weights_into",
    "model_config",
    "registered_names",
    "shipped_model_card",
    "models_dir",
    "read_model_file",
    "register_model",
    "save_qdf_average",
    "save_qdf_model",
    "weights_sha256",
    "with_lebedev_order",
]

FORMAT = "ase-qdf-model"
#: the newest format version this code reads (2: averages of models; 3: PaiNN members)
FORMAT_VERSION = 3
#: the version averages of QDF models are written with (readers of version 2 take them)
AVERAGE_VERSION = 2
#: the version of files with a PaiNN model (alone or in an average)
PAINN_VERSION = 3
#: the version single models are written with (what they need: older readers take them)
SINGLE_MODEL_VERSION = 1
AVERAGE_KIND = "average"
CONFIG_KEYS = ("representation", "hk", "energy_key", "atomwise", "offsets")
PAINN = "painn"
#: the settings of a PaiNN representation config; "architecture" marks it (QDF configs lack the key)
PAINN_KEYS = ("architecture", "n_atom_basis", "n_interactions", "n_rbf", "cutoff",
              "shared_interactions", "shared_filters", "epsilon")
ATOMWISE_ACTIVATIONS = {"silu": F.silu, "relu": F.relu, "shifted_softplus": snn.shifted_softplus}
REGISTRY_FILE = "registry.json"
DEFAULT_MODEL_NAME = "qdf_qm9"

PathLike = Union[str, os.PathLike]


class ModelFileError(ValueError):
    """A model file or config is malformed, tampered with, or of an unknown format."""


class UntrustedPickleError(ModelFileError):
    """A pickled model was given where unpickling was not explicitly allowed."""


# --------------------------------------------------------------------------- config


def default_config(
    representation: Optional[Dict[str, Any]] = None,
    hk: Optional[Dict[str, Any]] = None,
    with_hk: bool = True,
    energy_key: str = "energy_U0",
) -> Dict[str, Any]:
    """A complete config with QDF/HK defaults, overridden by the given dicts.

    The offsets are those of the QM9 training (``add_mean`` and ``add_atomrefs``);
    a freshly built model gets the QM9 U0 atomrefs and a zero mean.
    """
    rep = {k: v.default for k, v in _init_params(QDF).items()}
    rep.update(representation or {})
    hk_hp = None
    if with_hk:
        hk_hp = {k: v.default for k, v in _init_params(HKPotential).items()}
        hk_hp.update(hk or {})
    return {
        "representation": rep,
        "hk": hk_hp,
        "energy_key": energy_key,
        "atomwise": {"n_in": int(rep["n_atom_basis"]), "n_layers": 1, "n_hidden": None,
                     "activation": "silu", "aggregation_mode": "sum"},
        "offsets": {"property": energy_key, "add_mean": True, "add_atomrefs": True,
                    "is_extensive": True},
    }


def _init_params(cls) -> Dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return params


def _check_keys(section: str, given: Dict[str, Any], cls) -> None:
    if not isinstance(given, dict):
        raise ModelFileError(f"config[{section!r}] must be a dict, got {type(given).__name__}")
    unknown = sorted(set(given) - set(_init_params(cls)))
    if unknown:
        raise ModelFileError(
            f"config[{section!r}] has unknown key(s) {unknown} for {cls.__name__}; "
            f"known: {sorted(_init_params(cls))}"
        )


def validate_config(config: Any) -> Dict[str, Any]:
    """Check a model config; raise :class:`ModelFileError` naming what is wrong."""
    if not isinstance(config, dict):
        raise ModelFileError(f"model config must be a dict, got {type(config).__name__}")
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise ModelFileError(f"model config lacks key(s) {missing}; expected {list(CONFIG_KEYS)}")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ModelFileError(f"model config has unknown key(s) {unknown}")
    rep = config["representation"]
    if is_painn_config(config):
        _check_painn(rep, config["hk"])
    else:
        _check_keys("representation", rep, QDF)
    if rep.get("activation", "silu") is None:
        raise ModelFileError("config['representation']['activation'] is None (a custom callable); "
                             "only named activations can be stored")
    if config["hk"] is not None:
        _check_keys("hk", config["hk"], HKPotential)
    if not isinstance(config["energy_key"], str) or not config["energy_key"]:
        raise ModelFileError("config['energy_key'] must be a non-empty string")
    aw = config["atomwise"]
    if not isinstance(aw, dict) or "n_in" not in aw:
        raise ModelFileError("config['atomwise'] must be a dict with 'n_in'")
    unknown = sorted(set(aw) - {"n_in", "n_layers", "n_hidden", "activation", "aggregation_mode"})
    if unknown:
        raise ModelFileError(f"config['atomwise'] has unknown key(s) {unknown}")
    n_basis = rep.get("n_atom_basis", _init_params(QDF)["n_atom_basis"].default)
    if int(aw["n_in"]) != int(n_basis):
        raise ModelFileError(
            f"config['atomwise']['n_in'] = {aw['n_in']} does not match the representation's "
            f"n_atom_basis = {n_basis}"
        )
    if aw.get("aggregation_mode", "sum") != "sum":
        raise ModelFileError("config['atomwise']['aggregation_mode'] must be 'sum' (extensive energy)")
    if aw.get("activation", "silu") not in ATOMWISE_ACTIVATIONS:
        raise ModelFileError(f"config['atomwise']['activation'] must be one of {sorted(ATOMWISE_ACTIVATIONS)}")
    off = config["offsets"]
    if off is not None:
        need = {"property", "add_mean", "add_atomrefs", "is_extensive"}
        if not isinstance(off, dict) or set(off) != need:
            raise ModelFileError(f"config['offsets'] must be None or a dict with keys {sorted(need)}")
        if off["property"] != config["energy_key"]:
            raise ModelFileError(
                f"config['offsets']['property'] = {off['property']!r} differs from "
                f"energy_key {config['energy_key']!r}"
            )
        if not off["is_extensive"]:
            raise ModelFileError("config['offsets']['is_extensive'] must be True for energies")
    return config


def is_painn_config(config: Dict[str, Any]) -> bool:
    """True for the config of a PaiNN model (``representation.architecture == "painn"``)."""
    rep = config.get("representation") if isinstance(config, dict) else None
    return isinstance(rep, dict) and rep.get("architecture") == PAINN


def _check_painn(rep: Dict[str, Any], hk: Any) -> None:
    missing = [k for k in PAINN_KEYS if k not in rep]
    unknown = sorted(set(rep) - set(PAINN_KEYS))
    if missing or unknown:
        raise ModelFileError(f"config['representation'] of a PaiNN model: missing {missing}, unknown {unknown}; "
                             f"expected {list(PAINN_KEYS)}")
    for key in ("n_atom_basis", "n_interactions", "n_rbf"):
        if not isinstance(rep[key], int) or rep[key] < 1:
            raise ModelFileError(f"config['representation'][{key!r}] must be a positive integer, got {rep[key]!r}")
    if not isinstance(rep["cutoff"], (int, float)) or not rep["cutoff"] > 0:
        raise ModelFileError(f"config['representation']['cutoff'] must be a positive number, got {rep['cutoff']!r}")
    if hk is not None:
        raise ModelFileError("a PaiNN model has no HK head: config['hk'] must be None")


# --------------------------------------------------------------------------- factory


def per_atom_key(config: Dict[str, Any]) -> str:
    """Key of the per-atom network energies in the model outputs."""
    return config["energy_key"] + "_per_atom"


def build_qdf_model(config: Dict[str, Any]) -> spk.model.NeuralNetworkPotential:
    """Build the QDF (or PaiNN) NeuralNetworkPotential described by ``config`` (random weights).

    Modules: ``PairwiseDistances`` -> ``QDF`` -> [``Atomwise`` (total and per-atom
    energy), ``HKPotential`` (if ``config["hk"]``), ``Forces``] -> [``CastTo64``,
    ``AddOffsets``]. The postprocessor buffers (atomrefs, mean) are float64.
    The config is kept as ``model.qdf_config``, read back from the built modules, so it
    names every setting, defaults included (a stored config may predate a setting).

    ``model(inputs)`` runs everything (forces and HK included); the calculator
    and batch API run only what they need (:func:`ase_qdf.predict.evaluate_batch`).

    A config with ``representation.architecture == "painn"`` builds SchNetPack's PaiNN
    (Gaussian radial basis from 0 to the cutoff, cosine cutoff, SiLU) in place of QDF.
    """
    config = validate_config(config)
    energy_key = config["energy_key"]
    rep = _build_painn(config["representation"]) if is_painn_config(config) else QDF(**config["representation"])
    aw = config["atomwise"]
    outputs = [
        spk.atomistic.Atomwise(
            n_in=int(aw["n_in"]),
            n_layers=int(aw.get("n_layers", 1)),
            n_hidden=aw.get("n_hidden"),
            activation=ATOMWISE_ACTIVATIONS[aw.get("activation", "silu")],
            aggregation_mode="sum",
            output_key=energy_key,
            per_atom_output_key=per_atom_key(config),
        )
    ]
    if config["hk"] is not None:
        outputs.append(HKPotential(**config["hk"]))
    outputs.append(spk.atomistic.Forces(energy_key=energy_key, force_key="forces"))
    post = [spk.transform.CastTo64()]
    off = config["offsets"]
    if off is not None:
        atomrefs = torch.tensor(qm9pack_atomrefs_ev(), dtype=torch.float64)
        post.append(
            spk.transform.AddOffsets(
                off["property"], add_mean=bool(off["add_mean"]),
                add_atomrefs=bool(off["add_atomrefs"]), is_extensive=True,
                atomrefs=atomrefs, property_mean=torch.zeros(1, dtype=torch.float64),
            )
        )
    model = spk.model.NeuralNetworkPotential(
        representation=rep,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=outputs,
        postprocessors=post,
    )
    model.qdf_config = model_config(model)
    model.eval()
    return model


def _build_painn(rep: Dict[str, Any]) -> spk.representation.PaiNN:
    cutoff = float(rep["cutoff"])
    return spk.representation.PaiNN(
        n_atom_basis=int(rep["n_atom_basis"]),
        n_interactions=int(rep["n_interactions"]),
        radial_basis=spk.nn.GaussianRBF(n_rbf=int(rep["n_rbf"]), cutoff=cutoff),
        cutoff_fn=spk.nn.CosineCutoff(cutoff),
        shared_interactions=bool(rep["shared_interactions"]),
        shared_filters=bool(rep["shared_filters"]),
        epsilon=float(rep["epsilon"]),
    )


def _painn_config(rep: spk.representation.PaiNN) -> Dict[str, Any]:
    """The config of a PaiNN representation of the layout :func:`_build_painn` builds."""
    basis, cutoff_fn = rep.radial_basis, rep.cutoff_fn
    cutoff = float(rep.cutoff)
    plain = (type(basis) is spk.nn.GaussianRBF and type(cutoff_fn) is spk.nn.CosineCutoff
             and not isinstance(basis.offsets, nn.Parameter) and float(basis.offsets[0]) == 0.0
             and abs(float(basis.offsets[-1]) - cutoff) < 1e-6 and type(rep.embedding) is nn.Embedding
             and len(rep.electronic_embeddings) == 0
             and all(m.intraatomic_context_net[0].activation is F.silu for m in rep.mixing))
    if not plain:
        raise ModelFileError("only PaiNN with a fixed Gaussian radial basis from 0 to the cutoff, a cosine cutoff, "
                             "SiLU and no electronic embeddings can be stored")
    shared = len(rep.interactions) > 1 and rep.interactions[0] is rep.interactions[1]
    return {"architecture": PAINN, "n_atom_basis": int(rep.n_atom_basis), "n_interactions": int(rep.n_interactions),
            "n_rbf": int(basis.n_rbf), "cutoff": cutoff, "shared_interactions": bool(shared),
            "shared_filters": bool(rep.share_filters), "epsilon": float(rep.mixing[0].epsilon)}


def _find(modules, cls):
    found = [m for m in modules if isinstance(m, cls)]
    return found[0] if found else None


def model_config(model: nn.Module) -> Dict[str, Any]:
    """The config of a QDF (or PaiNN) NeuralNetworkPotential (built here or by ``spktrain``)."""
    cfg = getattr(model, "qdf_config", None)
    if cfg is not None:
        return json.loads(json.dumps(cfg))
    rep = getattr(model, "representation", None)
    if isinstance(rep, spk.representation.PaiNN):
        rep_hp = _painn_config(rep)
    elif not isinstance(rep, QDF):
        raise ModelFileError(
            f"not a QDF or PaiNN model: representation is {type(rep).__name__}, expected schnetpack_ext QDF"
        )
    else:
        rep_hp = dict(rep.hyperparameters)
    if rep_hp.get("activation", "silu") is None:
        raise ModelFileError("the QDF representation uses a custom activation callable, "
                             "which cannot be stored; use a named activation")
    outputs = list(getattr(model, "output_modules", []))
    atomwise = _find(outputs, spk.atomistic.Atomwise)
    if atomwise is None:
        raise ModelFileError("the model has no schnetpack Atomwise output module")
    if atomwise.n_out != 1 or atomwise.aggregation_mode != "sum":
        raise ModelFileError("the Atomwise head must have n_out=1 and aggregation_mode='sum'")
    layers = list(atomwise.outnet)
    activation = "silu"
    if len(layers) > 1:
        act = layers[0].activation
        names = [k for k, f in ATOMWISE_ACTIVATIONS.items() if f is act]
        if not names:
            raise ModelFileError(f"unsupported Atomwise activation {act!r}")
        activation = names[0]
    hk = _find(outputs, HKPotential)
    offsets = None
    add = _find(list(getattr(model, "postprocessors", [])), spk.transform.AddOffsets)
    if add is not None:
        offsets = {"property": add._property, "add_mean": bool(add.add_mean),
                   "add_atomrefs": bool(add.add_atomrefs), "is_extensive": bool(add.is_extensive)}
    config = {
        "representation": rep_hp,
        "hk": dict(hk.hyperparameters) if hk is not None else None,
        "energy_key": atomwise.output_key,
        "atomwise": {
            "n_in": int(layers[0].in_features),
            "n_layers": len(layers),
            "n_hidden": [int(l.out_features) for l in layers[:-1]] or None,
            "activation": activation,
            "aggregation_mode": "sum",
        },
        "offsets": offsets,
    }
    return validate_config(json.loads(json.dumps(config)))


#: the parts of a QDF model, in the order of :func:`_canonical_parts`
PART_NAMES = ("representation", "atomwise", "hk", "offsets")


def _canonical_parts(model: nn.Module):
    outputs = list(model.output_modules)
    return (
        model.representation,
        _find(outputs, spk.atomistic.Atomwise),
        _find(outputs, HKPotential),
        _find(list(model.postprocessors), spk.transform.AddOffsets),
    )


def as_qdf_model(model: nn.Module) -> spk.model.NeuralNetworkPotential:
    """A model built by :func:`build_qdf_model` with the weights of ``model``.

    Returns ``model`` itself when it was built by the factory; otherwise (e.g. an
    unpickled SchNetPack ``best_model``) rebuilds it and copies the weights module
    by module (strictly). An average (:class:`~ase_qdf.average.QDFAverage`) is
    returned as it is: its members were built by the factory.
    """
    if isinstance(model, QDFAverage) or getattr(model, "qdf_config", None) is not None:
        return model
    new = build_qdf_model(model_config(model))
    _copy_canonical_weights(model, new, PART_NAMES)
    return new


def _copy_canonical_weights(source: nn.Module, target: nn.Module, parts: Sequence[str]) -> None:
    """Copy the named canonical parts (see ``PART_NAMES``) strictly, module by module.

    Module by module because the same QDF model may order its output modules and
    postprocessors differently (built here or by ``spktrain``).
    """
    pairs = zip(PART_NAMES, _canonical_parts(source), _canonical_parts(target))
    for name, src, dst in pairs:
        if name not in parts:
            continue
        if (src is None) != (dst is None):
            raise ModelFileError(f"cannot map the {name} module onto the QDF model")
        if src is None:
            continue
        wanted = dst.state_dict()
        state = {k: v.detach().to("cpu") for k, v in src.state_dict().items()}
        for key, value in state.items():
            # SchNetPack stores a scalar mean after initialize_transforms, shape [1] before
            if key in wanted and value.numel() == wanted[key].numel() == 1:
                state[key] = value.reshape(wanted[key].shape)
        try:
            dst.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFileError(f"the {name} weights do not fit the model: {_first_line(err)}") from None


# --------------------------------------------------------------------------- hashing


def weights_sha256(state_dict: Dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes of a state dict (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            raise ModelFileError(f"state_dict[{name!r}] is not a tensor")
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- save / load


def save_qdf_model(model: nn.Module, path: PathLike, metadata: Optional[Dict[str, Any]] = None) -> str:
    """Write ``model`` (a QDF NeuralNetworkPotential) as a safe ase-qdf model file.

    Args:
        model: a model from :func:`build_qdf_model`/:func:`load_qdf_model`, or a
            SchNetPack QDF model of the ``qdf_qm9`` layout (converted on the fly).
        path: output file (``.pt``); written atomically (temp file + rename).
        metadata: JSON-serialisable dict (e.g. training data, metrics, date).

    Returns:
        The SHA-256 of the written file.
    """
    if isinstance(model, QDFAverage):
        return save_qdf_average(model.members, model.weights.tolist(), path, metadata)
    member = _member_payload(model)
    version = PAINN_VERSION if is_painn_config(member["config"]) else SINGLE_MODEL_VERSION
    payload = {"format": FORMAT, "format_version": version, **member, "metadata": _json_metadata(metadata)}
    return _write_payload(payload, path)


def save_qdf_average(members: Sequence[nn.Module], weights: Sequence[float], path: PathLike,
                     metadata: Optional[Dict[str, Any]] = None) -> str:
    """Write the weighted average of QDF models as one ase-qdf model file (format version 2).

    Args:
        members: QDF models (as for :func:`save_qdf_model`), at least two, sharing
            cutoff and energy key.
        weights: one non-negative weight per member, summing to 1 (e.g. chosen on the
            validation split by ``qdf benchmark blend``).
        path: output file (``.pt``); written atomically.
        metadata: JSON-serialisable dict.

    Returns:
        The SHA-256 of the written file.

    Raises:
        ValueError: bad weights, or members that cannot be averaged.
    """
    canonical = [as_qdf_model(m) for m in members]
    if any(isinstance(m, QDFAverage) for m in canonical):
        raise ValueError("the members of an average must be single models, not averages")
    average = QDFAverage(canonical, weights)  # checks weights, cutoffs and energy keys
    members = [_member_payload(m) for m in canonical]
    payload = {
        "format": FORMAT,
        # an average of QDF models stays readable by the readers of version 2
        "format_version": PAINN_VERSION if any(is_painn_config(m["config"]) for m in members) else AVERAGE_VERSION,
        "kind": AVERAGE_KIND,
        "weights": average.weights.tolist(),
        "members": members,
        "metadata": _json_metadata(metadata),
    }
    return _write_payload(payload, path)


def _json_metadata(metadata: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(metadata or {})))
    except TypeError as err:
        raise ValueError(f"metadata must be JSON-serialisable: {err}") from None


def _member_payload(model: nn.Module) -> Dict[str, Any]:
    """Config, state dict and weights hash of one (single) QDF model."""
    canonical = as_qdf_model(model)
    state = {k: v.detach().to("cpu").clone() for k, v in canonical.state_dict().items()}
    return {"config": model_config(canonical), "state_dict": state, "weights_sha256": weights_sha256(state)}


def _write_payload(payload: Dict[str, Any], path: PathLike) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return file_sha256(path)


def _first_line(err: BaseException) -> str:
    lines = str(err).splitlines()
    return lines[0][:200] if lines else "no message"


def read_model_file(path: PathLike, expected_sha256: Optional[str] = None) -> Dict[str, Any]:
    """Read and check an ase-qdf model file without building the model.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: (``ValueError``) file SHA-256 differs from ``expected_sha256``,
            the file is empty, truncated or corrupt, its format/version/config is
            wrong, or its weights hash does not match.
        UntrustedPickleError: (a ``ModelFileError``) the file is a pickle that
            ``weights_only=True`` refuses (e.g. a SchNetPack ``best_model``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if expected_sha256:
        actual = file_sha256(path)
        if actual.lower() != expected_sha256.lower():
            raise ModelFileError(
                f"SHA-256 mismatch for {path}: expected {expected_sha256}, got {actual}; "
                "the file is corrupt or not the registered model"
            )
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise ModelFileError(f"{path} is empty (0 bytes), not an ase-qdf model file")
    known = head.startswith(b"PK") or head.startswith(b"\x80")  # a torch zip archive or a pickle
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not known:
            raise ModelFileError(
                f"{path} is not an ase-qdf model file (neither a torch archive nor a pickle)"
            ) from None
        raise UntrustedPickleError(
            f"{path} is not a safe ase-qdf model file: it cannot be loaded with "
            f"torch.load(weights_only=True) ({type(err).__name__}: {_first_line(err)}). "
            "If it is a SchNetPack best_model or checkpoint from your own training, convert it "
            "with `qdf export BEST_MODEL OUT.pt --trust-pickle` (unpickling can run arbitrary code)."
        ) from None
    except Exception as err:  # noqa: BLE001 - torch raises many types on broken files
        if not known:
            raise ModelFileError(
                f"{path} is not an ase-qdf model file (neither a torch archive nor a pickle)"
            ) from None
        raise ModelFileError(
            f"{path} cannot be read as a model file; it is truncated or corrupt "
            f"({type(err).__name__}: {_first_line(err)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelFileError(f"{path} is not an ase-qdf model file (format = {got!r}, expected {FORMAT!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format_version {version} is newer than this ase-qdf supports "
            f"({FORMAT_VERSION}); upgrade ase-qdf"
        )
    kind = payload.get("kind", "single")
    if kind == AVERAGE_KIND and version < AVERAGE_VERSION:
        raise ModelFileError(f"{path}: an average needs format_version {AVERAGE_VERSION}, the file says {version}")
    if kind == AVERAGE_KIND:
        members = payload.get("members")
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            raise ModelFileError(f"{path}: an average needs a list of members")
        try:
            check_average_weights(payload.get("weights", []), len(members))
        except ValueError as err:
            raise ModelFileError(f"{path}: {err}") from None
        for k, member in enumerate(members):
            _check_member(member, f"{path}: member {k}")
    elif kind == "single":
        _check_member(payload, str(path))
    else:
        raise ModelFileError(f"{path}: unknown model kind {kind!r} (expected 'single' or {AVERAGE_KIND!r})")
    configs = [m["config"] for m in payload["members"]] if kind == AVERAGE_KIND else [payload["config"]]
    if version < PAINN_VERSION and any(is_painn_config(c) for c in configs):
        raise ModelFileError(f"{path}: a PaiNN model needs format_version {PAINN_VERSION}, the file says {version}")
    payload.setdefault("metadata", {})
    return payload


def _check_member(member: Dict[str, Any], where: str) -> None:
    """Keys, weights hash and config of one model's part of a file."""
    for key in ("config", "state_dict", "weights_sha256"):
        if key not in member:
            raise ModelFileError(f"{where}: missing key {key!r}")
    state = member["state_dict"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{where}: state_dict must be a dict")
    actual = weights_sha256(state)
    if actual != member["weights_sha256"]:
        raise ModelFileError(
            f"{where}: weights SHA-256 mismatch (recorded {member['weights_sha256']}, "
            f"computed {actual}); the weights were modified or corrupted"
        )
    try:
        validate_config(member["config"])
    except ModelFileError as err:
        raise ModelFileError(f"{where}: {err}") from None


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else cpu."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    """``"float32"``/``"float64"`` (or the torch dtypes) -> torch dtype."""
    table = {"float32": torch.float32, "float64": torch.float64,
             torch.float32: torch.float32, torch.float64: torch.float64}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]


def prepare_model(model: nn.Module, device="cpu", dtype=torch.float32) -> nn.Module:
    """Move a factory model to ``device``/``dtype`` in place, keeping the offsets in float64.

    An average's members are moved one by one; its weights stay float64.
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    if isinstance(model, QDFAverage):
        for member in model.members:
            prepare_model(member, dev, dt)
        model.weights = model.weights.to(device=dev)
        model.eval()
        return model
    for name, child in model.named_children():
        # atomrefs and mean are never rounded to float32
        child.to(device=dev, dtype=torch.float64 if name == "postprocessors" else dt)
    model.eval()
    return model


def load_qdf_model(
    path: PathLike,
    device: Union[str, torch.device] = "cpu",
    dtype: Union[str, torch.dtype] = torch.float32,
    expected_sha256: Optional[str] = None,
) -> spk.model.NeuralNetworkPotential:
    """Load an ase-qdf model file (``weights_only=True`` only) and rebuild the model.

    The model is rebuilt with :func:`build_qdf_model` from the stored config and
    the state dict is loaded strictly; an average (format version 2) becomes a
    :class:`~ase_qdf.average.QDFAverage` of its rebuilt members. ``model.qdf_metadata``
    holds the metadata, ``model.qdf_sha256`` the file's SHA-256, ``model.qdf_path``
    the path and ``model.qdf_format_version`` the file's format version.

    Raises:
        FileNotFoundError, ModelFileError (``ValueError``): see :func:`read_model_file`.
    """
    payload = read_model_file(path, expected_sha256=expected_sha256)
    if payload.get("kind") == AVERAGE_KIND:
        members = [_built_member(m, f"{path}: member {k}") for k, m in enumerate(payload["members"])]
        try:
            model = QDFAverage(members, payload["weights"])
        except ValueError as err:
            raise ModelFileError(f"{path}: {err}") from None
    else:
        model = _built_member(payload, str(path))
    prepare_model(model, device, dtype)
    model.qdf_metadata = payload["metadata"]
    model.qdf_sha256 = file_sha256(path)
    model.qdf_path = str(path)
    model.qdf_format_version = int(payload["format_version"])
    return model


def _built_member(member: Dict[str, Any], where: str) -> spk.model.NeuralNetworkPotential:
    """The model of one checked config and state dict (see :func:`read_model_file`)."""
    model = build_qdf_model(member["config"])
    own = model.state_dict()
    missing = sorted(set(own) - set(member["state_dict"]))
    unexpected = sorted(set(member["state_dict"]) - set(own))
    if missing or unexpected:
        raise ModelFileError(
            f"{where}: state_dict does not match the config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    try:
        model.load_state_dict(member["state_dict"], strict=True)
    except RuntimeError as err:
        raise ModelFileError(f"{where}: state_dict does not match the config: {err}") from None
    return model


# Settings that change no weight: a model file may differ from the model it initialises
# in these (e.g. a run fine-tuned in float32 from one trained with bf16 autocast).
NON_WEIGHT_SETTINGS = {
    # the normalisation changes the function, not the weights: a model fine-tuned into
    # the local normalisation starts from weights trained with the molecule one
    "representation": ("mixed_precision", "chunk_size", "compute_hk_fields", "lebedev_order",
                       "normalisation", "local_cutoff", "local_width"),
    "hk": ("mixed_precision", "point_fraction"),
}


def load_weights_into(model: nn.Module, path: PathLike, expected_sha256: Optional[str] = None) -> nn.Module:
    """Copy the weights of an ase-qdf model file into a QDF model, e.g. to fine-tune it.

    The representation, the Atomwise head and the HK head are copied strictly; the
    offsets (mean and atomrefs) are left to the training data, as in any run. The file
    is read with ``torch.load(weights_only=True)``.

    Args:
        model: a QDF ``NeuralNetworkPotential`` (built by ``spktrain`` or here).
        path: the ase-qdf model file.
        expected_sha256: if given, the file's SHA-256 must match.

    Returns:
        ``model``, changed in place.

    Raises:
        ModelFileError: the file is not a model file, or its architecture differs
            from the model's (the differing settings are named).

    The model keeps its own Lebedev order: weights trained on one grid start a run on
    another (the grid is no parameter).
    """
    payload = read_model_file(path, expected_sha256=expected_sha256)
    if payload.get("kind") == AVERAGE_KIND:
        raise ModelFileError(f"{path} is an average of {len(payload['members'])} models; one model cannot be "
                             "initialised from it (start from one of its members' files)")
    source = build_qdf_model(payload["config"])
    source.load_state_dict(payload["state_dict"], strict=True)
    # the built model's config, not the stored one: it names every setting, also
    # those a file predates (with their defaults)
    source_config, target_config = model_config(source), model_config(model)
    differences = []
    for section in ("representation", "hk", "atomwise"):
        src, dst = source_config.get(section) or {}, target_config.get(section) or {}
        if bool(src) != bool(dst):
            differences.append(f"{section}: {'present' if src else 'absent'} in the file, "
                               f"{'present' if dst else 'absent'} in the model")
            continue
        skip = NON_WEIGHT_SETTINGS.get(section, ())
        for key in sorted(set(src) | set(dst)):
            if key not in skip and src.get(key) != dst.get(key):
                differences.append(f"{section}.{key}: {src.get(key)!r} in the file, {dst.get(key)!r} in the model")
    if differences:
        raise ModelFileError(f"{path}: cannot initialise this model from it: " + "; ".join(differences))
    # the grid is a buffer, not a weight: a run on another Lebedev order keeps its own grid
    order = target_config["representation"].get("lebedev_order")
    if order is not None and source.representation.grid_kind == "lebedev":
        with_lebedev_order(source, int(order))
    try:
        _copy_canonical_weights(source, model, ("representation", "atomwise", "hk"))
    except ModelFileError as err:
        raise ModelFileError(f"{path}: {err}") from None
    return model


# --------------------------------------------------------------------------- export


def export_spk_model(
    best_model_path: PathLike,
    out_path: PathLike,
    trust_pickle: bool = False,
    metadata: Optional[Dict[str, Any]] = None,
    lebedev_order: Optional[int] = None,
) -> str:
    """Convert a pickled SchNetPack ``best_model`` (or Lightning ``.ckpt``) to an ase-qdf file.

    SchNetPack saves whole pickled modules; unpickling a file executes code named
    in it, so only do this for files from your own training runs, and say so with
    ``trust_pickle=True``.

    Args:
        best_model_path: the pickled model or checkpoint.
        out_path: the ase-qdf file to write.
        trust_pickle: must be True (see above).
        metadata: extra metadata to store.
        lebedev_order: evaluate the exported model on a Lebedev grid of this
            order (see :meth:`schnetpack_ext.representation.QDF.set_lebedev_order`);
            the training order is kept in the metadata.

    Returns:
        The SHA-256 of the written file.

    Raises:
        UntrustedPickleError: ``trust_pickle`` is not True.
    """
    if trust_pickle is not True:
        raise UntrustedPickleError(
            f"refusing to unpickle {best_model_path}: SchNetPack best_model/checkpoint files are "
            "pickles, and loading a pickle can execute arbitrary code. Only convert files written "
            "by your own training, with trust_pickle=True (CLI: --trust-pickle)."
        )
    obj = torch.load(best_model_path, map_location="cpu", weights_only=False)
    model = obj
    if isinstance(obj, dict):  # Lightning checkpoint: model in hyper_parameters, weights in state_dict
        model = (obj.get("hyper_parameters") or {}).get("model")
        if not isinstance(model, nn.Module):
            raise ModelFileError(f"{best_model_path}: checkpoint holds no pickled model in hyper_parameters")
        state = {k[len("model."):]: v for k, v in obj.get("state_dict", {}).items() if k.startswith("model.")}
        if state:
            model.load_state_dict(state, strict=True)
    if not isinstance(model, nn.Module):
        raise ModelFileError(f"{best_model_path}: expected a pickled model, got {type(model).__name__}")
    meta = {"source": os.path.basename(str(best_model_path)),
            "schnetpack_version": getattr(model, "spk_version", None)}
    if lebedev_order is not None:
        meta["trained_lebedev_order"] = model.representation.hyperparameters.get("lebedev_order")
        model = with_lebedev_order(model, int(lebedev_order))
    meta.update(metadata or {})
    return save_qdf_model(model.cpu(), out_path, metadata=meta)


def with_lebedev_order(model: nn.Module, order: int, copy_first: bool = False) -> nn.Module:
    """``model`` evaluated on a Lebedev grid of angular order ``order``.

    Args:
        model: a QDF model (its representation on a Lebedev grid), or an average of
            such models (every QDF member changes; a PaiNN member has no grid).
        order: angular order (3, 5, ..., 131: :func:`scipy.integrate.lebedev_rule`).
        copy_first: change a copy, not ``model`` (for modules owned by the caller).

    Raises:
        ValueError: the model is on the paper grid, has no QDF member, or ``order`` is no
            Lebedev rule (from :meth:`~schnetpack_ext.representation.QDF.set_lebedev_order`).
    """
    members = [m for _, m in qdf_members(model)]
    if not members:
        raise ValueError("lebedev_order: the model has no QDF member, hence no grid (a PaiNN model)")
    if all(m.representation.grid_kind == "lebedev" and m.representation.hyperparameters.get("lebedev_order") == order
           for m in members):
        return model
    if copy_first:
        model = copy.deepcopy(model)
    for _, member in qdf_members(model):
        member.representation.set_lebedev_order(order)
    return model


def lebedev_order_of(model: nn.Module):
    """The ``lebedev_order`` setting of a model's representation; a list (one per member) for an average.

    None for a PaiNN model or member (it has no grid).
    """
    orders = [getattr(m.representation, "hyperparameters", {}).get("lebedev_order") for _, m in model_members(model)]
    return orders[0] if not isinstance(model, QDFAverage) else orders


# --------------------------------------------------------------------------- registry


def models_dir() -> Path:
    """The folder of the shipped models (``ase_qdf/models``)."""
    return Path(__file__).resolve().parent / "models"


def _read_registry(directory: Optional[Path] = None) -> Dict[str, Any]:
    reg_path = (directory or models_dir()) / REGISTRY_FILE
    if not reg_path.is_file():
        return {"default": DEFAULT_MODEL_NAME, "models": []}
    with open(reg_path) as f:
        return json.load(f)


def registry_entry(name: Optional[str] = None) -> Dict[str, Any]:
    """The registry entry (name, file, sha256) of a shipped model (default: the default one)."""
    reg = _read_registry()
    name = name or reg.get("default", DEFAULT_MODEL_NAME)
    for entry in reg.get("models", []):
        if entry.get("name") == name:
            return entry
    return {"name": name, "file": f"{name}.pt", "sha256": None}


def registered_names() -> List[str]:
    """Names of the models shipped inside the package (``registry.json``), default first."""
    reg = _read_registry()
    names = [e["name"] for e in reg.get("models", []) if e.get("name")]
    default = reg.get("default")
    return sorted(names, key=lambda n: n != default)


def load_model_file_or_name(model: PathLike, device="cpu", dtype=torch.float32):
    """Load a model file, or a shipped model by its registered name (e.g. ``"qdf_qm9"``).

    An existing file of that name wins over a registered name.
    """
    if not Path(model).exists() and str(model) in registered_names():
        return load_default_model(device=device, dtype=dtype, name=str(model))
    return load_qdf_model(model, device=device, dtype=dtype)


def shipped_model_card(model: nn.Module) -> Optional[str]:
    """The model card (``MODEL_CARD.md``) if ``model`` is one of the shipped models, else None."""
    registered = {e.get("sha256") for e in _read_registry().get("models", [])}
    card = models_dir() / "MODEL_CARD.md"
    if getattr(model, "qdf_sha256", None) in registered and card.is_file():
        return card.read_text()
    return None


def default_model_path(name: Optional[str] = None) -> Path:
    """Path of the shipped model (it may not exist yet)."""
    return models_dir() / registry_entry(name)["file"]


def load_default_model(device="cpu", dtype=torch.float32, name: Optional[str] = None):
    """Load the shipped model, checking its SHA-256 against the registry.

    Raises:
        FileNotFoundError: the model file is not shipped (yet).
        ModelFileError: no SHA-256 recorded, or it does not match.
    """
    entry = registry_entry(name)
    path = models_dir() / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped QDF model {path} is not present (no trained model has been shipped "
            "with this installation yet); pass a model file explicitly "
            "(model=PATH / --model PATH / QDF_MODEL=PATH)"
        )
    if not entry.get("sha256"):
        raise ModelFileError(f"no SHA-256 recorded for {entry['name']} in {models_dir() / REGISTRY_FILE}")
    return load_qdf_model(path, device=device, dtype=dtype, expected_sha256=entry["sha256"])


def register_model(path: PathLike, name: str = DEFAULT_MODEL_NAME, directory: Optional[PathLike] = None,
                   make_default: bool = True) -> Dict[str, Any]:
    """Record ``name``, file name and SHA-256 of a model file in ``registry.json``.

    The file must lie in ``directory`` (default: the shipped models folder) and is
    validated first.
    """
    directory = Path(directory) if directory is not None else models_dir()
    path = Path(path)
    if path.resolve().parent != directory.resolve():
        raise ValueError(f"{path} must lie in {directory}")
    read_model_file(path)
    reg = _read_registry(directory)
    entry = {"name": name, "file": path.name, "sha256": file_sha256(path)}
    reg["models"] = [e for e in reg.get("models", []) if e.get("name") != name] + [entry]
    if make_default:
        reg["default"] = name
    with open(directory / REGISTRY_FILE, "w") as f:
        json.dump(reg, f, indent=2)
        f.write("\n")
    return entry
