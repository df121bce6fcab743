"""Separated-pair batches: regrouping, extensivity of a local model, and the training option."""

import pytest
import pytorch_lightning as pl
import torch

import schnetpack as spk
import schnetpack.properties as properties

from schnetpack_ext.representation import QDF
from schnetpack_ext.separated_pairs import merge_separated_pairs, pair_groups

from tests.schnetpack_ext.test_hk_task import _datamodule
from tests.schnetpack_ext.test_hk_task import _task as _hk_task


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    dm = _datamodule(tmp_path_factory.mktemp("pairs"))
    dm.prepare_data()
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def _model(normalisation):
    torch.manual_seed(0)
    rep = QDF(n_atom_basis=16, normalisation=normalisation).double()
    return spk.model.NeuralNetworkPotential(
        representation=rep,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=16, n_layers=1, output_key="energy_U0")],
    ).double()


def _energy(model, batch):
    inputs = {k: (v.double() if v.is_floating_point() else v).clone() for k, v in batch.items()}
    with torch.no_grad():
        return model(inputs)["energy_U0"]


def test_pair_groups_number_the_merged_structures():
    merge = torch.tensor([True, False, True])
    assert pair_groups(merge, 6).tolist() == [0, 0, 1, 2, 3, 3]
    assert pair_groups(merge, 7).tolist() == [0, 0, 1, 2, 3, 3, 4]  # an odd molecule stays alone


def test_merged_batch_regroups_molecules_sums_targets_and_moves_the_second_fragment(batch):
    n = batch[properties.n_atoms].shape[0]
    assert n == 8
    merge = torch.tensor([True, False, True, True])
    pairs = merge_separated_pairs(batch, ["energy_U0"], merge, distance=100.0)
    n_atoms = batch[properties.n_atoms]
    assert pairs[properties.n_atoms].tolist() == [
        int(n_atoms[0] + n_atoms[1]), int(n_atoms[2]), int(n_atoms[3]),
        int(n_atoms[4] + n_atoms[5]), int(n_atoms[6] + n_atoms[7])]
    energy = batch["energy_U0"]
    torch.testing.assert_close(pairs["energy_U0"], torch.stack(
        [energy[0] + energy[1], energy[2], energy[3], energy[4] + energy[5], energy[6] + energy[7]]))
    assert pairs[properties.idx].tolist() == batch[properties.idx][[0, 2, 3, 4, 6]].tolist()
    idx_m = pairs[properties.idx_m]
    assert (idx_m[1:] >= idx_m[:-1]).all() and int(idx_m[-1]) == 4
    # the second molecule of each merged pair moved along x only, the others not at all
    moved = torch.isin(batch[properties.idx_m], torch.tensor([1, 5, 7]))
    shift = pairs[properties.R] - batch[properties.R]
    assert torch.allclose(shift[moved], torch.tensor([100.0, 0.0, 0.0]).expand(int(moved.sum()), 3))
    assert (shift[~moved] == 0).all()
    # no neighbour pair joins two fragments: the per-pair entries are untouched
    for key in (properties.idx_i, properties.idx_j, properties.offsets):
        assert pairs[key] is batch[key]
    assert batch[properties.n_atoms].shape[0] == 8  # the input batch is not modified


def test_an_odd_molecule_stays_alone(batch):
    keep = batch[properties.idx_m] < 7
    odd = dict(batch)
    odd[properties.n_atoms] = batch[properties.n_atoms][:7]
    odd[properties.idx] = batch[properties.idx][:7]
    odd["energy_U0"] = batch["energy_U0"][:7]
    del odd["atomization_energy"]
    for key in (properties.cell, properties.pbc):
        odd[key] = batch[key].reshape(8, -1)[:7].reshape((-1,) + batch[key].shape[1:])
    odd[properties.idx_m] = batch[properties.idx_m][keep]
    odd[properties.R] = batch[properties.R][keep]
    pairs = merge_separated_pairs(odd, ["energy_U0"], torch.ones(3, dtype=torch.bool))
    assert pairs[properties.n_atoms].shape == (4,)
    assert pairs["energy_U0"][3] == batch["energy_U0"][6]


def test_bad_arguments_are_refused(batch):
    with pytest.raises(ValueError, match="shape"):
        merge_separated_pairs(batch, ["energy_U0"], torch.ones(3, dtype=torch.bool))
    with pytest.raises(KeyError):
        merge_separated_pairs(batch, ["homo"], torch.ones(4, dtype=torch.bool))


def test_per_molecule_columns_that_are_not_summed_are_left_out(batch):
    assert "atomization_energy" in batch
    pairs = merge_separated_pairs(batch, ["energy_U0"], torch.ones(4, dtype=torch.bool))
    assert "atomization_energy" not in pairs and "energy_U0" in pairs


def test_local_normalisation_is_extensive_on_merged_pairs_and_the_molecule_one_is_not(batch):
    # in float64 before the shift: 100 Å in float32 rounds positions to 1e-5 Å
    batch = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
    pairs = merge_separated_pairs(batch, ["energy_U0"], torch.ones(4, dtype=torch.bool))
    for normalisation, extensive in (("local", True), ("molecule", False)):
        model = _model(normalisation)
        single = _energy(model, batch).view(4, 2).sum(1)
        paired = _energy(model, pairs)
        gap = (paired - single).abs().max().item()
        if extensive:
            assert gap < 1e-9, gap
        else:
            assert gap > 1e-4, gap


def _task(separated_pairs, aggregation="sum"):
    return _hk_task("joint", aggregation=aggregation, separated_pairs=separated_pairs)


def test_training_on_separated_pairs_lowers_the_pair_error_it_logs(tmp_path):
    dm = _datamodule(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    task = _task(1.0)
    task.model.initialize_transforms(dm)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
    )
    trainer.validate(task, datamodule=dm, verbose=False)
    before = float(trainer.callback_metrics["val_energy_U0_pair_error"])
    torch.manual_seed(1)
    trainer = pl.Trainer(
        max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
    )
    trainer.fit(task, datamodule=dm)
    after = float(trainer.callback_metrics["val_energy_U0_pair_error"])
    assert 0 < after < 0.5 * before, (before, after)


def test_separated_pairs_is_validated():
    with pytest.raises(ValueError, match="probability"):
        _task(1.5)
    with pytest.raises(ValueError, match="sum-aggregated"):
        _task(0.5, aggregation="avg")
