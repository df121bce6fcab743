"""Training and inference throughput of QDF beside SchNet and PaiNN, same molecules, same run.

Training: optimizer steps (forward, backward, Adam) on collated batches of QM9
molecules with precomputed neighbour lists, as in a cached training pipeline;
QDF trains energy + HK potential. Inference: end to end from ASE ``Atoms`` to
energies (neighbour lists and collation included). Usage::

    python -m ase_qdf.benchmarks.throughput --molecules 256 --json out.json
"""

import argparse
import json
import os
import platform
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from ase import Atoms

import schnetpack as spk
import schnetpack.transform as trn

from .models import save_json

__all__ = ["training_throughput", "inference_throughput", "machine_info", "main", "parse_variant"]

EXPERIMENTS = {
    "QDF (ours)": ("qdf_qm9", []),
    "QDF (ours) bf16-train": ("qdf_qm9", ["model.representation.mixed_precision=train",
                                           ]),
    "QDF (ours) bf16-train order-9": ("qdf_qm9", ["model.representation.mixed_precision=train",
                                                   "model.representation.lebedev_order=9"]),
    "QDF (shipped recipe)": ("qdf_qm9_relu", []),
    "QDF (paper mode)": ("qdf_qm9_paper", []),
    "SchNet": ("schnet_qm9_under14", []),
    "PaiNN": ("painn_qm9_under14", []),
}


def machine_info(device: str = "cpu") -> Dict[str, object]:
    """Cores, threads, torch version and accelerator: where the numbers were measured."""
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: wait for them before reading the clock
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _converter(cutoff: float, device: torch.device) -> spk.interfaces.AtomsConverter:
    """SchNetPack's Atoms -> batch converter with a matscipy neighbour list, float32."""
    return spk.interfaces.AtomsConverter(
        neighbor_list=trn.MatScipyNeighborList(cutoff=cutoff), dtype=torch.float32, device=device
    )


def _batches(molecules: Sequence[Atoms], cutoff: float, batch_size: int,
             device: torch.device = torch.device("cpu")) -> List[Dict[str, torch.Tensor]]:
    converter = _converter(cutoff, device)
    return [converter(list(molecules[i : i + batch_size])) for i in range(0, len(molecules), batch_size)]


def training_throughput(
    model: torch.nn.Module,
    molecules: Sequence[Atoms],
    cutoff: float,
    energy_key: str = "energy_U0",
    batch_size: int = 32,
    hk_mode: str = "off",
    repeats: int = 1,
    device: str = "cpu",
) -> float:
    """Molecules per second of training steps (one warm-up batch excluded).

    Args:
        hk_mode: ``off`` (energy only), ``joint`` (energy + HK, one step) or
            ``alternating`` (an energy step then an HK step, as the paper).
        device: torch device of the model and the (pre-collated) batches.
    """
    from schnetpack_ext.hk_task import HKPotentialOutput

    device = torch.device(device)
    model = model.float().train().to(device)
    model.do_postprocessing = False
    hk = HKPotentialOutput()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    batches = _batches(molecules, cutoff, batch_size, device)
    targets = [torch.zeros(len(b[spk.properties.n_atoms]), device=device) for b in batches]

    def step(batch, target):
        pred = model({k: v for k, v in batch.items()})
        loss = torch.nn.functional.mse_loss(pred[energy_key], target)
        if hk_mode == "joint":
            loss = loss + hk.potential_loss(pred)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if hk_mode == "alternating":
            pred = model({k: v for k, v in batch.items()})
            optimizer.zero_grad()
            hk.potential_loss(pred).backward()
            optimizer.step()

    step(batches[0], targets[0])  # warm-up
    _sync(device)
    n, start = 0, time.perf_counter()
    for _ in range(repeats):
        for batch, target in zip(batches, targets):
            step(batch, target)
            n += len(target)
    _sync(device)
    return n / (time.perf_counter() - start)


def inference_throughput(
    model: torch.nn.Module,
    molecules: Sequence[Atoms],
    cutoff: float,
    energy_key: str = "energy_U0",
    batch_size: int = 32,
    device: str = "cpu",
) -> float:
    """Molecules per second from ``Atoms`` to energies (back on the host), preprocessing included.

    A QDF model runs through :class:`ase_qdf.predict.QDFEngine`, the code path of the
    calculator, ``predict_energies`` and ``qdf screen`` (energy only: no HK fields, no
    HK head); SchNet and PaiNN through SchNetPack's ``AtomsConverter`` and their model.
    """
    from schnetpack_ext.representation import QDF

    device = torch.device(device)
    model = model.float().eval().to(device)
    if isinstance(getattr(model, "representation", None), QDF):
        from ase_qdf.model_io import as_qdf_model
        from ase_qdf.predict import QDFEngine

        engine = QDFEngine(as_qdf_model(model), device=device, dtype="float32")

        def energies(batch):
            return [r["energy"] for r in engine.evaluate(batch)]
    else:
        converter = _converter(cutoff, device)

        def energies(batch):
            with torch.no_grad():
                return model(converter(batch))[energy_key].cpu().numpy()

    energies(list(molecules[:batch_size]))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(molecules), batch_size):
        energies(list(molecules[i : i + batch_size]))
    return len(molecules) / (time.perf_counter() - start)


def parse_variant(text: str) -> Tuple[str, Tuple[str, List[str]]]:
    """``"NAME=EXPERIMENT:a=1,b=2"`` -> ``("NAME", ("EXPERIMENT", ["a=1", "b=2"]))``."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise ValueError(f"--variant needs NAME=EXPERIMENT[:OVERRIDE,...], got {text!r}")
    experiment, _, overrides = spec.partition(":")
    return name.strip(), (experiment.strip(), [o.strip() for o in overrides.split(",") if o.strip()])


def main(argv: List[str] = None) -> Dict[str, object]:
    from schnetpack_ext.datasets import qm9pack_atoms

    from .models import experiment_config, model_from_experiment, neighbor_cutoff

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=256, help="QM9 <= 14-atom molecules (random, fixed seed)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--inference-batch-sizes", default="1,32,128")
    parser.add_argument("--models", default=",".join(EXPERIMENTS), help="comma-separated subset of: " + ", ".join(EXPERIMENTS))
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=EXPERIMENT[:OVERRIDE,...]",
                        help="an extra model from a Hydra experiment with overrides, e.g. "
                        "'QDF D128=qdf_qm9_relu:model.representation.n_atom_basis=128' (repeatable)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    parser.add_argument("--db", help="read the under14 molecules from this ASE database (e.g. the "
                        "training cache qm9pack_under14.db) instead of the qm9pack CSV files")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    experiments = dict(EXPERIMENTS)
    names = args.models.split(",") if args.models else []
    for text in args.variant:
        try:
            name, spec = parse_variant(text)
        except ValueError as err:
            parser.error(str(err))
        experiments[name] = spec
        names.append(name)
    unknown = [n for n in names if n not in experiments]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(experiments)} or add --variant")
    for name in names:  # a mistyped override fails here, before any timing
        try:
            experiment_config(*experiments[name])
        except Exception as err:  # noqa: BLE001 - Hydra raises several types for bad overrides
            parser.error(f"{name}: {type(err).__name__}: {str(err).splitlines()[0]}")

    rng = np.random.default_rng(1729)
    if args.db:
        import ase.db

        with ase.db.connect(args.db, use_lock_file=False) as db:
            pool = [row.toatoms() for row in db.select()]
    else:
        pool = [atoms for _, atoms, _ in qm9pack_atoms("under14")]
    molecules = [pool[i] for i in rng.choice(len(pool), size=args.molecules, replace=False)]
    results = {"machine": machine_info(args.device), "n_molecules": len(molecules),
               "mean_atoms": float(np.mean([len(m) for m in molecules])), "models": {}}
    for name in names:
        experiment, overrides = experiments[name]
        cutoff = neighbor_cutoff(experiment, overrides)
        model = model_from_experiment(experiment, overrides)
        hk_mode = "off"
        if experiment.startswith("qdf"):
            hk_mode = "alternating" if experiment == "qdf_qm9_paper" else "joint"
        row = {"experiment": experiment, "parameters": sum(p.numel() for p in model.parameters()),
               "train_hk_mode": hk_mode,
               "train_mol_per_s": training_throughput(model, molecules, cutoff, batch_size=args.batch_size,
                                                      hk_mode=hk_mode, device=args.device)}
        for bs in [int(b) for b in args.inference_batch_sizes.split(",")]:
            n = min(len(molecules), 64) if bs == 1 else len(molecules)
            row[f"inference_mol_per_s_bs{bs}"] = inference_throughput(model, molecules[:n], cutoff, batch_size=bs,
                                                                      device=args.device)
        results["models"][name] = row
        print(name, json.dumps(row))
    ref = results["models"].get("SchNet")
    if ref:
        for row in results["models"].values():
            row["train_ratio_vs_schnet"] = row["train_mol_per_s"] / ref["train_mol_per_s"]
            row["inference_ratio_vs_schnet_bs32"] = row.get("inference_mol_per_s_bs32", 0) / ref.get("inference_mol_per_s_bs32", 1)
    save_json(results, args.json)
    return results


if __name__ == "__main__":
    main()
