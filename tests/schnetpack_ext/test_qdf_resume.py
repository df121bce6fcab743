"""Interrupted QDF training resumes from ``checkpoints/last.ckpt`` (``qdf_qm9_smoke``, tiny sizes).

SchNetPack's ``spktrain`` calls ``trainer.fit(ckpt_path=last.ckpt)`` when it is re-run
in a run directory that already holds that checkpoint. The SchNet baseline is covered
in ``test_spktrain_baselines.py``; this covers the QDF task (joint HK loss, its own
optimiser state and the checkpoint plugin of the QDF experiments).
"""

import torch

from .spktrain_runner import TINY_QDF, run_spktrain


def test_rerun_in_same_run_dir_resumes_from_last_checkpoint(tmp_path):
    # first run "interrupted" after one of two epochs: it stops at max_epochs=1
    first = run_spktrain(tmp_path, "resume", "qdf_qm9_smoke", *TINY_QDF, "trainer.max_epochs=1", timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    last = tmp_path / "runs" / "resume" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["epoch"] == 0
    steps_after_first = ckpt["global_step"]
    assert steps_after_first > 0

    second = run_spktrain(tmp_path, "resume", "qdf_qm9_smoke", *TINY_QDF, "trainer.max_epochs=2", timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Resuming from checkpoint" in second.stdout + second.stderr
    ckpt = torch.load(last, weights_only=False)
    # one more epoch on top of the first (not two from scratch): epoch counter and steps continue
    assert ckpt["epoch"] == 1
    assert ckpt["global_step"] == 2 * steps_after_first
