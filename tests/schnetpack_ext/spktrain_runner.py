"""Run SchNetPack's ``spktrain`` in a scratch folder, as a user would (shared by tests)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

SPKTRAIN = str(Path(sys.executable).with_name("spktrain"))
if not os.path.exists(SPKTRAIN):
    SPKTRAIN = shutil.which("spktrain")


def run_spktrain(workdir: Path, run_id: str, experiment: str, *overrides: str,
                 timeout: int = 600) -> subprocess.CompletedProcess:
    """``spktrain experiment=... run.id=...`` with data, runs and QM9 cache under ``workdir``."""
    env = dict(os.environ, QDF_CACHE_DIR=str(workdir / "cache"))
    cmd = [SPKTRAIN, f"experiment={experiment}", f"run.work_dir={workdir}",
           f"run.data_dir={workdir}/data", f"run.id={run_id}", "print_config=False", *overrides]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
