"""Training scales out with Lightning's DDP strategy: two CPU processes, gloo backend."""


from .spktrain_runner import run_spktrain


def test_qdf_trains_with_ddp_on_two_cpu_processes(tmp_path):
    proc = run_spktrain(
        tmp_path, "ddp", "qdf_qm9_smoke", "trainer=ddp_trainer", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.max_epochs=1", "data.max_molecules=64",
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "distributed_backend=gloo" in log
    assert "GLOBAL_RANK: 0" in log and "GLOBAL_RANK: 1" in log
    assert (tmp_path / "runs" / "ddp" / "best_model").is_file()
