"""The shared ``last_checkpoint`` callback: ``last.ckpt`` always holds the last epoch.

Lightning >= 2.6 writes ``last.ckpt`` only when it also saves a best checkpoint, so an
interrupted run could resume from an old epoch. Every experiment (QDF and the SchNet
baseline here; PaiNN composes the same list, see ``test_spktrain_baselines.py``) adds the
``last_checkpoint`` callbacks config, which saves it every epoch. The best-checkpoint
rule is inverted in these runs (``mode=max``): it keeps epoch 0 unless the validation
loss rises, so only ``last_checkpoint`` can have written the last epoch.
"""

import pytest
import torch

from .spktrain_runner import TINY_QDF, TINY_SCHNET, run_spktrain


@pytest.mark.parametrize(
    "experiment, overrides",
    [("qdf_qm9_smoke", TINY_QDF), ("schnet_qm9_under14", TINY_SCHNET)],
    ids=["qdf", "schnet"],
)
def test_last_checkpoint_is_the_last_epoch_even_without_improvement(tmp_path, experiment, overrides):
    run = run_spktrain(tmp_path, "last", experiment, *overrides, "trainer.max_epochs=3",
                       "callbacks.model_checkpoint.mode=max", "logger=csv", timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    checkpoints = tmp_path / "runs" / "last" / "checkpoints"
    ckpt = torch.load(checkpoints / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2
    assert ckpt["global_step"] > 0
    # no versioned copies (last-v1.ckpt, ...) beside it
    assert sorted(p.name for p in checkpoints.glob("last*")) == ["last.ckpt"]
