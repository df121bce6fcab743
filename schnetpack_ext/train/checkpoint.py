"""Checkpoint IO for the Lightning trainer that can read SchNetPack checkpoints."""

from __future__ import annotations

from typing import Any, Callable, Optional

from pytorch_lightning.plugins.io import TorchCheckpointIO

__all__ = ["TrustedCheckpointIO"]


class TrustedCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that loads with ``weights_only=False`` unless told otherwise.

    Why: SchNetPack checkpoints pickle ``nn.Module`` objects in ``hyper_parameters``
    (``AtomisticTask.save_hyperparameters()`` stores the model). Lightning >= 2.6
    hands ``weights_only=None`` to ``torch.load``, whose default has been ``True``
    since torch 2.6, so the trainer's own loads fail: resuming with
    ``trainer.fit(..., ckpt_path=...)`` and ``trainer.test(ckpt_path="best")``, both
    called by ``spktrain``. Pass it to the trainer (``Trainer(plugins=[TrustedCheckpointIO()])``,
    or ``trainer.plugins`` in a Hydra config).

    Security: only for checkpoints written by your own training runs; an explicit
    ``weights_only=True`` from the caller is respected.
    """

    def load_checkpoint(
        self,
        path,
        map_location: Optional[Callable] = lambda storage, loc: storage,
        weights_only: Optional[bool] = None,
    ) -> dict[str, Any]:
        if weights_only is None:
            weights_only = False
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
