"""SchNetPack task whose checkpoints load under torch >= 2.6 / Lightning >= 2.6."""

from __future__ import annotations

from typing import Any, Optional

import schnetpack

__all__ = ["TrustedAtomisticTask"]


class TrustedAtomisticTask(schnetpack.AtomisticTask):
    """:class:`schnetpack.AtomisticTask` whose ``load_from_checkpoint`` defaults to
    ``weights_only=False``.

    Why: ``AtomisticTask.__init__`` calls ``save_hyperparameters()``, which stores the
    model, its output modules and the loss/metric modules (``nn.Module`` objects) in the
    checkpoint's ``hyper_parameters``. Since torch 2.6 ``torch.load`` defaults to
    ``weights_only=True``, and Lightning >= 2.6 passes that default on, so loading such a
    checkpoint fails with ``UnpicklingError: Weights only load failed``. ``spktrain``
    calls ``type(task).load_from_checkpoint(best_path)`` after training; with this
    class as ``task._target_`` that call works again.

    Security: ``weights_only=False`` unpickles arbitrary objects. Use it only for
    checkpoints written by your own training runs; pass ``weights_only=True``
    explicitly for anything else.
    """

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path,
        map_location=None,
        hparams_file=None,
        strict: Optional[bool] = None,
        weights_only: Optional[bool] = False,
        **kwargs: Any,
    ):
        return super().load_from_checkpoint(
            checkpoint_path,
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            weights_only=weights_only,
            **kwargs,
        )
