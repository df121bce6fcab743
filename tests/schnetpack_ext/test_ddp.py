"""Training scales out with Lightning's DDP strategy: two CPU processes, gloo backend."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

SPKTRAIN = str(Path(sys.executable).with_name("spktrain"))
if not os.path.exists(SPKTRAIN):
    SPKTRAIN = shutil.which("spktrain")


def test_qdf_trains_with_ddp_on_two_cpu_processes(tmp_path):
    env = dict(os.environ, QDF_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [
        SPKTRAIN, "experiment=qdf_qm9_smoke", "trainer=ddp_trainer", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.max_epochs=1", "data.max_molecules=64",
        f"run.work_dir={tmp_path}", f"run.data_dir={tmp_path}/data", "run.id=ddp",
        "print_config=False",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "distributed_backend=gloo" in log
    assert "GLOBAL_RANK: 0" in log and "GLOBAL_RANK: 1" in log
    assert (tmp_path / "runs" / "ddp" / "best_model").is_file()
