"""The Hohenberg-Kohn auxiliary task: target formula, loss, and training modes."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from ase.build import molecule

import schnetpack as spk
import schnetpack.transform as trn

from schnetpack_ext.atomistic import HKPotential
from schnetpack_ext.datasets import QM9Pack
from schnetpack_ext.hk_task import HKPotentialOutput, QDFTask
from schnetpack_ext.representation import QDF


def test_external_potential_is_the_gaussian_nuclear_potential_on_the_lebedev_grid():
    rep = QDF(n_atom_basis=8).double()
    atoms = molecule("CH3OH")
    conv = spk.interfaces.AtomsConverter(
        neighbor_list=trn.ASENeighborList(cutoff=rep.cutoff), dtype=torch.float64
    )
    out = rep(spk.atomistic.PairwiseDistances()(conv(atoms)))
    points = (atoms.positions[:, None, :] + rep.grid_offsets.numpy()[None]).reshape(-1, 3)
    d2 = ((points[:, None, :] - atoms.positions[None]) ** 2).sum(-1)
    expected = -(atoms.numbers[None, :] * np.exp(-d2)).sum(1)
    np.testing.assert_allclose(out["external_potential"].numpy(), expected, rtol=1e-6, atol=1e-12)
    # the quadrature weights integrate the grid balls: sum w = n_atoms * (4/3 pi r^3) / v0
    ball = 4.0 / 3.0 * np.pi * rep.grid_radius**3 / 0.3**3
    assert out["grid_weights"].sum().item() == pytest.approx(len(atoms) * ball, rel=1e-6)


def test_hk_loss_is_weighted_mse_and_point_subsampling_only_in_training():
    out = HKPotentialOutput(loss_weight=2.0)
    pred = {
        "hk_potential": torch.tensor([1.0, 2.0, 4.0]),
        "hk_potential_target": torch.tensor([0.0, 2.0, 2.0]),
        "hk_potential_weights": torch.tensor([1.0, 1.0, 2.0]),
    }
    assert out.calculate_loss(pred).item() == pytest.approx(2.0 * (1.0 + 0.0 + 8.0) / 4.0)

    hk = HKPotential(n_hidden=4, point_fraction=0.25)
    inputs = {
        "density": torch.rand(400),
        "external_potential": torch.rand(400),
        "grid_weights": torch.ones(400),
    }
    assert hk.train()(dict(inputs))["hk_potential"].shape == (100,)
    assert hk.eval()(dict(inputs))["hk_potential"].shape == (400,)


def _datamodule(tmp_path):
    return QM9Pack(
        max_molecules=64,
        batch_size=8,
        num_workers=0,
        transforms=[
            trn.RemoveOffsets("energy_U0", remove_atomrefs=True, remove_mean=True),
            trn.MatScipyNeighborList(cutoff=4.75),
            trn.CastTo32(),
        ],
        split_file=str(tmp_path / "split.npz"),
    )


def _task(hk_mode, trainable="all", lr=3e-3, aggregation="sum", **task_kwargs):
    torch.manual_seed(0)
    rep = QDF(n_atom_basis=16)
    model = spk.model.NeuralNetworkPotential(
        representation=rep,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[
            spk.atomistic.Atomwise(n_in=16, n_layers=1, output_key="energy_U0", aggregation_mode=aggregation),
            HKPotential(n_hidden=16),
        ],
        postprocessors=[trn.CastTo64(), trn.AddOffsets("energy_U0", add_mean=True, add_atomrefs=True)],
    )
    outputs = [
        spk.task.ModelOutput("energy_U0", loss_fn=torch.nn.MSELoss(), metrics={}),
        HKPotentialOutput(loss_weight=1.0),
    ]
    return QDFTask(
        model=model, outputs=outputs, hk_mode=hk_mode, trainable=trainable,
        optimizer_cls=torch.optim.Adam, optimizer_args={"lr": lr}, **task_kwargs,
    )


def _losses(task, batch):
    task.eval()
    with torch.no_grad():
        targets = {"energy_U0": batch["energy_U0"].clone()}
        pred = task.predict_without_postprocessing({k: v.clone() for k, v in batch.items()})
        energy = task.outputs[0].calculate_loss(pred, targets).item()
        potential = task.outputs[1].potential_loss(pred).item()
    return energy, potential


@pytest.mark.parametrize("hk_mode", ["joint", "alternating"])
def test_a_few_training_steps_lower_both_losses(hk_mode, tmp_path):
    dm = _datamodule(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    task = _task(hk_mode)
    task.model.initialize_transforms(dm)
    batch = next(iter(dm.train_dataloader()))
    before = _losses(task, batch)
    # manual optimisation counts both optimizer steps of a batch
    max_steps = 80 if hk_mode == "alternating" else 40
    trainer = pl.Trainer(
        max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
    )
    trainer.fit(task, datamodule=dm)
    after = _losses(task, batch)
    assert after[0] < 0.8 * before[0], (before, after)
    assert after[1] < 0.8 * before[1], (before, after)
    if hk_mode == "alternating":
        # two optimizer steps per batch: one on the energy, one on the potential
        assert trainer.global_step == 80
        assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 40


def test_hk_mode_is_validated():
    with pytest.raises(ValueError, match="hk_mode"):
        _task("both")


def test_hk_refit_trains_only_the_hk_head_and_keeps_the_energies_exactly(tmp_path):
    dm = _datamodule(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    # the head alone cannot move the density towards the potential: a larger step
    task = _task("joint", trainable="hk", lr=3e-2)
    task.model.initialize_transforms(dm)
    hk_head = task.model.output_modules[1]
    frozen = {k: v.clone() for k, v in task.model.state_dict().items() if not k.startswith("output_modules.1.")}
    head_before = {k: v.clone() for k, v in hk_head.state_dict().items()}
    batch = next(iter(dm.train_dataloader()))
    before = _losses(task, batch)
    trainer = pl.Trainer(
        max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
        # SchNetPack's weight averaging, as in the training configs
        callbacks=[spk.train.ExponentialMovingAverage(decay=0.9)],
    )
    trainer.fit(task, datamodule=dm)
    after = _losses(task, batch)
    for key, value in task.model.state_dict().items():
        if key in frozen:
            assert torch.equal(value, frozen[key]), key
    assert after[0] == before[0]  # the same energies, bit for bit
    assert after[1] < 0.8 * before[1], (before, after)
    assert any(not torch.equal(v, head_before[k]) for k, v in hk_head.state_dict().items())
    # the averaged weights (what checkpoints and best_model hold) keep the frozen ones exactly
    (ema,) = [c for c in trainer.callbacks if isinstance(c, spk.train.ExponentialMovingAverage)]
    params = list(task.model.parameters())
    assert ema.ema.num_updates == 40 and len(ema.ema.shadow_params) == len(params)
    for average, param in zip(ema.ema.shadow_params, params):
        assert param.requires_grad or torch.equal(average, param)


@pytest.mark.parametrize("hk_mode, trainable, match", [
    ("off", "hk", "needs hk_mode joint"),
    ("alternating", "hk", "needs hk_mode joint"),
    ("joint", "energy", "trainable must be all or hk"),
])
def test_trainable_is_validated(hk_mode, trainable, match):
    with pytest.raises(ValueError, match=match):
        _task(hk_mode, trainable=trainable)


def test_init_fresh_keeps_the_named_modules_at_the_runs_initialisation(tmp_path):
    """``init_fresh``: the functional and the energy head keep the weights the run's seed drew,
    every other weight comes from the ``init_from`` file."""
    from ase_qdf.model_io import save_qdf_model

    fresh = {k: v.clone() for k, v in _task("joint").model.state_dict().items()}  # seed 0, as in _task
    trained = _task("joint").model
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(torch.rand_like(param) + 0.5)  # differs from the fresh draw everywhere
    save_qdf_model(trained, tmp_path / "trained.pt")
    trained_state = trained.state_dict()

    dm = _datamodule(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    task = _task("joint", lr=0.0, init_from=str(tmp_path / "trained.pt"),
                 init_fresh=["representation.functional", "output_modules.0"])
    task.model.initialize_transforms(dm)
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, accelerator="cpu",
    )
    trainer.fit(task, datamodule=dm)  # learning rate zero: the weights setup() left
    kept_fresh = copied = 0
    for key, value in task.model.state_dict().items():
        if not key.startswith(("representation.", "output_modules.")):
            continue
        if key.startswith(("representation.functional.", "output_modules.0.")):
            assert torch.equal(value, fresh[key]), key
            kept_fresh += 1
        elif value.is_floating_point():
            assert torch.equal(value, trained_state[key]), key
            copied += 1
    assert kept_fresh == 8 and copied > 8  # three functional layers and the head; orbitals, grid, HK head


@pytest.mark.parametrize("kwargs, match", [
    ({"init_fresh": ["representation.functional"]}, "set init_from"),
    ({"init_from": "model.pt", "init_fresh": ["representation.functionals"]}, "no submodule 'representation.functionals'"),
])
def test_init_fresh_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _task("joint", **kwargs)
