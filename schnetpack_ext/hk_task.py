"""Training QDF with the Hohenberg-Kohn auxiliary loss in SchNetPack's task.

Two modes combine the energy loss and the HK potential loss:

- ``joint``: one optimizer step on ``loss_E + w_HK * loss_V`` (fast, default);
- ``alternating``: two optimizer steps per batch, first on the energy loss,
  then on the potential loss, as in the paper;
- ``off``: the HK loss is ignored in training (still logged).

With ``trainable="hk"`` only the HK head trains (``joint`` mode): the representation
and the energy head are frozen, so a model trained with the HK loss off gets a
refitted HK map while its energies stay bit for bit the same.

With ``separated_pairs > 0`` a fraction of the training molecules are merged, two by
two, into structures of two fragments 100 Å apart whose target is the sum of theirs
(:mod:`schnetpack_ext.separated_pairs`); validation then also logs how far the model's
energy of every such pair is from the sum of its two energies.

References:
    .. [#qdf] Tsubaki, Mizoguchi. Phys. Rev. Lett. 125, 206401 (2020).
"""

from typing import Dict, Optional, Sequence

import torch
from hydra.utils import to_absolute_path

import schnetpack.properties as properties
from schnetpack.task import UnsupervisedModelOutput

from schnetpack_ext.atomistic import HKPotential
from schnetpack_ext.separated_pairs import merge_separated_pairs, pair_groups
from schnetpack_ext.task import TrustedAtomisticTask

__all__ = ["HKPotentialOutput", "QDFTask"]


class HKPotentialOutput(UnsupervisedModelOutput):
    """Loss and metrics of the HK map against the analytic external potential.

    The target is computed by the model from the molecule (no dataset column),
    so this is an unsupervised output: both prediction and target live in the
    model outputs. The loss is the quadrature-weighted mean squared error over
    all grid points (the plain mean on the paper grid, whose weights are 1).

    Args:
        name: key of the predicted potential (the ``output_key`` of
            :class:`schnetpack_ext.atomistic.HKPotential`).
        loss_weight: weight in the joint loss.
        metrics: torchmetrics, called as ``metric(prediction, target)``.
    """

    def __init__(
        self,
        name: str = "hk_potential",
        loss_weight: float = 1.0,
        metrics: Optional[Dict] = None,
    ):
        super().__init__(
            name=name,
            loss_fn=None,
            loss_weight=loss_weight,
            metrics=metrics or {},
            target_property=name + "_target",
        )
        self.weights_key = name + "_weights"

    def potential_loss(self, pred: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Quadrature-weighted MSE of the potential (without ``loss_weight``)."""
        weights = pred[self.weights_key]
        error2 = (pred[self.name] - pred[self.target_property].detach()) ** 2
        return (weights * error2).sum() / weights.sum()

    def calculate_loss(self, pred, target=None):
        if self.loss_weight == 0:
            return 0.0
        return self.loss_weight * self.potential_loss(pred)

    def update_metrics(self, pred, target, subset):
        for metric in self.metrics[subset].values():
            metric(pred[self.name].detach(), pred[self.target_property].detach())


class QDFTask(TrustedAtomisticTask):
    """:class:`schnetpack.AtomisticTask` with the QDF Hohenberg-Kohn training modes.

    Args:
        hk_mode: ``"joint"``, ``"alternating"`` or ``"off"``.
        init_from: an ase-qdf model file (``qdf export``) whose weights initialise the
            model, to fine-tune a trained model with a new optimizer and schedule (the
            offsets still come from the training data). A relative path is taken from
            the directory ``spktrain`` was started in. A run that resumes from its own
            checkpoint gets the checkpoint's weights, not these.
        init_fresh: names of submodules of the model (``representation.functional``,
            ``output_modules.0``) that keep their fresh random initialisation instead of
            the ``init_from`` weights: a new functional learns on trained orbitals, a
            member whose errors differ from the file's (needs ``init_from``).
        trainable: ``"all"`` (default) or ``"hk"``: only the HK head's parameters
            train (``hk_mode`` must be ``joint``); the rest is frozen, which the
            weight averaging keeps exactly (it moves a frozen weight by zero).
        **kwargs: see :class:`schnetpack.AtomisticTask`.
    """

    def __init__(self, *args, hk_mode: str = "joint", init_from: Optional[str] = None,
                 init_fresh: Sequence[str] = (), trainable: str = "all", separated_pairs: float = 0.0,
                 pair_distance: float = 100.0, **kwargs):
        if hk_mode not in ("joint", "alternating", "off"):
            raise ValueError(f"hk_mode must be joint, alternating or off, not {hk_mode!r}")
        if trainable not in ("all", "hk"):
            raise ValueError(f"trainable must be all or hk, not {trainable!r}")
        if trainable == "hk" and hk_mode != "joint":
            # off: no loss reaches the head; alternating: its energy step would have no parameter
            raise ValueError(f"trainable='hk' needs hk_mode joint, not {hk_mode!r}")
        super().__init__(*args, **kwargs)
        if trainable == "hk":
            hk_heads = [m for m in self.model.output_modules if isinstance(m, HKPotential)]
            if not hk_heads:
                raise ValueError("trainable='hk' needs a model with an HKPotential output module")
            self.model.requires_grad_(False)
            for head in hk_heads:
                head.requires_grad_(True)
        if not 0.0 <= separated_pairs <= 1.0:
            raise ValueError(f"separated_pairs is a probability in [0, 1], not {separated_pairs!r}")
        self.separated_pairs = float(separated_pairs)
        self.pair_distance = float(pair_distance)
        if self.separated_pairs > 0:
            self._check_extensive()
        self.hk_mode = hk_mode
        self.automatic_optimization = hk_mode != "alternating"
        # relative to where spktrain started: Hydra changes into the run directory
        self.init_from = to_absolute_path(init_from) if init_from else None
        self.init_fresh = [str(name) for name in init_fresh]
        if self.init_fresh and not self.init_from:
            raise ValueError("init_fresh names modules to keep fresh among the init_from weights; set init_from")
        modules = dict(self.model.named_modules())
        unknown = [name for name in self.init_fresh if not name or name not in modules]
        if unknown:
            raise ValueError(f"init_fresh: the model has no submodule {unknown[0]!r} "
                             f"(e.g. representation.functional, output_modules.0)")

    def setup(self, stage=None):
        super().setup(stage)
        # The weights are copied when a fresh fit starts, not in __init__: a task rebuilt by
        # load_from_checkpoint gets its model from the checkpoint's pickled hyperparameters,
        # whose tensors share storage with the checkpoint's state_dict, so copying there
        # would overwrite the trained weights before Lightning loads them. A resumed fit
        # restores its checkpoint after this hook, so it keeps its own weights either way.
        if stage == "fit" and self.init_from and getattr(self.trainer, "ckpt_path", None) is None:
            # ase_qdf owns the model-file format; imported here since ase_qdf imports this package
            from ase_qdf.model_io import load_weights_into

            modules = dict(self.model.named_modules())
            # the model was just built from the run's seed: keep those random weights
            fresh = {name: {k: v.detach().clone() for k, v in modules[name].state_dict().items()}
                     for name in self.init_fresh}
            load_weights_into(self.model, self.init_from)
            for name, state in fresh.items():
                modules[name].load_state_dict(state)

    def _check_extensive(self):
        energy_outputs, _ = self._split_outputs()
        for output in energy_outputs:
            modules = [m for m in self.model.output_modules
                       if getattr(m, "output_key", None) == output.name]
            modes = {getattr(m, "aggregation_mode", None) for m in modules}
            if modes != {"sum"}:
                raise ValueError(f"separated_pairs sums the target {output.target_property!r} of two "
                                 f"molecules, which needs a sum-aggregated output; {output.name!r} has "
                                 f"aggregation {sorted(map(str, modes))}")

    def _merged_pairs(self, batch, every_pair: bool = False):
        """The batch with consecutive molecules merged into separated pairs.

        Training merges each pair with probability ``separated_pairs``, drawn from torch's
        global generator (seeded by Lightning); ``every_pair`` (validation) merges all of
        them without a draw, so that validating does not shift the training's random stream.
        """
        n_pairs = int(batch[properties.n_atoms].shape[0]) // 2
        device = batch[properties.n_atoms].device
        if every_pair:
            merge = torch.ones(n_pairs, dtype=torch.bool, device=device)
        else:
            merge = torch.rand(n_pairs).to(device) < self.separated_pairs
        energy_outputs, _ = self._split_outputs()
        keys = [o.target_property for o in energy_outputs]
        return merge_separated_pairs(batch, keys, merge, self.pair_distance), merge

    def _log_pair_errors(self, pairs, merge, pred, subset: str):
        """Log mean |E(A + B) - E(A) - E(B)| over the merged pairs (eV, model units)."""
        if not bool(merge.any()):
            return
        pair_pred = self.predict_without_postprocessing(pairs)
        n_molecules = int(merge.shape[0]) * 2
        structure_of_pair = pair_groups(merge, n_molecules)[0::2]
        energy_outputs, _ = self._split_outputs()
        for output in energy_outputs:
            single = pred[output.name][:n_molecules].view(-1, 2).sum(1)[merge]
            paired = pair_pred[output.name][structure_of_pair[merge]]
            self.log(f"{subset}_{output.name}_pair_error", (paired - single).abs().mean(),
                     on_step=False, on_epoch=True, batch_size=int(merge.sum()))

    def _split_outputs(self):
        hk = [o for o in self.outputs if isinstance(o, HKPotentialOutput)]
        other = [o for o in self.outputs if not isinstance(o, HKPotentialOutput)]
        return other, hk

    def _targets(self, batch):
        targets = {
            output.target_property: batch[output.target_property]
            for output in self.outputs
            if not isinstance(output, UnsupervisedModelOutput)
        }
        if "considered_atoms" in batch:
            targets["considered_atoms"] = batch["considered_atoms"]
        return targets

    def _step(self, batch, subset: str):
        """Forward pass, per-part losses logged; total loss and predictions returned."""
        targets = self._targets(batch)
        pred = self.predict_without_postprocessing(batch)
        pred, targets = self.apply_constraints(pred, targets)
        energy_outputs, hk_outputs = self._split_outputs()
        loss_energy = sum(o.calculate_loss(pred, targets) for o in energy_outputs)
        loss = loss_energy
        batch_size = len(batch["_idx"])
        on_step = subset == "train"
        for o in hk_outputs:
            loss_v = o.potential_loss(pred)
            self.log(f"{subset}_{o.name}_loss", loss_v, on_step=on_step, on_epoch=not on_step, batch_size=batch_size)
            if self.hk_mode == "joint":
                loss = loss + o.loss_weight * loss_v
        self.log(f"{subset}_energy_loss", loss_energy, on_step=on_step, on_epoch=not on_step, batch_size=batch_size)
        self.log_metrics(pred, targets, subset)
        return loss, pred

    def training_step(self, batch, batch_idx):
        if self.separated_pairs > 0:
            batch, _ = self._merged_pairs(batch)
        if self.hk_mode != "alternating":
            loss, _ = self._step(batch, "train")
            self.log("train_loss", loss, on_step=True, on_epoch=False)
            return loss

        # the paper's scheme: an energy step, then a potential step, one optimizer
        optimizer = self.optimizers()
        energy_outputs, hk_outputs = self._split_outputs()
        targets = self._targets(batch)  # before the forward pass overwrites batch keys
        batch_size = len(batch["_idx"])

        pred = self.predict_without_postprocessing(batch)
        pred, targets = self.apply_constraints(pred, targets)
        loss_energy = sum(o.calculate_loss(pred, targets) for o in energy_outputs)
        optimizer.zero_grad()
        self.manual_backward(loss_energy)
        optimizer.step()
        self.log_metrics(pred, targets, "train")
        self.log("train_energy_loss", loss_energy.detach(), on_step=True, batch_size=batch_size)

        loss_potential = None
        if hk_outputs:
            pred = self.predict_without_postprocessing(batch)
            loss_potential = sum(o.loss_weight * o.potential_loss(pred) for o in hk_outputs)
            optimizer.zero_grad()
            self.manual_backward(loss_potential)
            optimizer.step()
            for o in hk_outputs:
                self.log(f"train_{o.name}_loss", o.potential_loss(pred).detach(), on_step=True, batch_size=batch_size)
        total = loss_energy.detach() + (0.0 if loss_potential is None else loss_potential.detach())
        self.log("train_loss", total, on_step=True, on_epoch=False, batch_size=batch_size)
        return total

    def validation_step(self, batch, batch_idx):
        torch.set_grad_enabled(self.grad_enabled)
        # merged before the forward pass, which writes its outputs into the batch
        pairs = self._merged_pairs(batch, every_pair=True) if self.separated_pairs > 0 else None
        loss, pred = self._step(batch, "val")
        if pairs is not None:
            self._log_pair_errors(*pairs, pred, "val")
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["_idx"]))
        return {"val_loss": loss}

    def test_step(self, batch, batch_idx):
        torch.set_grad_enabled(self.grad_enabled)
        loss, _ = self._step(batch, "test")
        self.log("test_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["_idx"]))
        return {"test_loss": loss}

    def on_train_epoch_end(self):
        # manual optimisation: Lightning does not step the schedulers itself
        if self.automatic_optimization:
            return
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        if not isinstance(schedulers, list):
            schedulers = [schedulers]
        for scheduler in schedulers:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                metric = self.trainer.callback_metrics.get(self.schedule_monitor or "val_loss")
                if metric is not None:
                    scheduler.step(metric)
            else:
                scheduler.step()
