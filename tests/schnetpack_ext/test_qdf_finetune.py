"""``task.init_from``: a run starts from the weights of an ase-qdf model file (fine-tuning).

The shipped model's second phase (``qdf_qm9_relu_finetune``) starts this way from the
export of the first. Tiny sizes: a run at learning rate zero must hold exactly the file's
weights, and a real fine-tuning run must end with its trained weights in ``best_model``.
"""

import re
from pathlib import Path

import pytest
import torch

import schnetpack_ext
from ase_qdf.model_io import export_spk_model, read_model_file

from .spktrain_runner import TINY_QDF, run_spktrain

TINY = [*TINY_QDF, "trainer.max_epochs=1"]


def _weights(best_model):
    model = torch.load(best_model, map_location="cpu", weights_only=False)
    return {k: v for k, v in model.state_dict().items() if k.startswith(("representation.", "output_modules."))}


def test_init_from_copies_the_weights_of_a_model_file(tmp_path):
    first = run_spktrain(tmp_path, "phase1", "qdf_qm9_smoke", *TINY, "seed=1", timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    export_spk_model(tmp_path / "runs" / "phase1" / "best_model", tmp_path / "phase1.pt", trust_pickle=True)
    exported = read_model_file(tmp_path / "phase1.pt")["state_dict"]

    # relative to where spktrain starts, although spktrain changes into the run directory;
    # learning rate zero: the run's weights are exactly the file's
    frozen = run_spktrain(tmp_path, "frozen", "qdf_qm9_smoke", *TINY, "seed=2", "globals.lr=0.0",
                          "task.init_from=phase1.pt", timeout=300)
    assert frozen.returncode == 0, frozen.stdout[-3000:] + frozen.stderr[-3000:]
    started = _weights(tmp_path / "runs" / "frozen" / "best_model")
    assert len(started) > 10
    for key, value in started.items():
        assert torch.equal(value, exported[key]), key

    # a real fine-tuning step: the best_model spktrain writes at the end (rebuilt from the
    # best checkpoint) holds the trained weights, not the file's again
    tuned = run_spktrain(tmp_path, "tuned", "qdf_qm9_smoke", *TINY, "seed=2", "task.init_from=phase1.pt", timeout=300)
    assert tuned.returncode == 0, tuned.stdout[-3000:] + tuned.stderr[-3000:]
    best = _weights(tmp_path / "runs" / "tuned" / "best_model")
    ckpt = torch.load(tmp_path / "runs" / "tuned" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for key, value in best.items():
        assert torch.equal(value, ckpt["state_dict"]["model." + key].to(value.dtype)), key
    assert not all(torch.equal(value, exported[key]) for key, value in best.items())


def test_init_from_a_different_architecture_is_refused(tmp_path):
    first = run_spktrain(tmp_path, "phase1", "qdf_qm9_smoke", *TINY, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    export_spk_model(tmp_path / "runs" / "phase1" / "best_model", tmp_path / "phase1.pt", trust_pickle=True)
    wider = [o.replace("n_atom_basis=8", "n_atom_basis=16") for o in TINY]
    other = run_spktrain(tmp_path, "wider", "qdf_qm9_smoke", *wider,
                         f"task.init_from={tmp_path / 'phase1.pt'}", timeout=300)
    assert other.returncode != 0
    assert "n_atom_basis: 8 in the file, 16 in the model" in other.stdout + other.stderr


def test_hk_refit_run_changes_the_hk_head_only(tmp_path):
    """``task.trainable=hk`` through ``spktrain`` (the HK refit): ``best_model`` holds the
    file's representation and energy head exactly, and a retrained HK head."""
    first = run_spktrain(tmp_path, "phase1", "qdf_qm9_smoke", *TINY, "seed=1", "task.hk_mode=off", timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    export_spk_model(tmp_path / "runs" / "phase1" / "best_model", tmp_path / "phase1.pt", trust_pickle=True)
    exported = read_model_file(tmp_path / "phase1.pt")["state_dict"]
    refit = run_spktrain(tmp_path, "refit", "qdf_qm9_smoke", *TINY, "seed=2", "task.hk_mode=joint",
                         "+task.trainable=hk", "globals.lr=1e-2", "task.init_from=phase1.pt", timeout=300)
    assert refit.returncode == 0, refit.stdout[-3000:] + refit.stderr[-3000:]
    weights = _weights(tmp_path / "runs" / "refit" / "best_model")
    model = torch.load(tmp_path / "runs" / "refit" / "best_model", map_location="cpu", weights_only=False)
    (hk_index,) = [i for i, m in enumerate(model.output_modules) if type(m).__name__ == "HKPotential"]
    hk_prefix = f"output_modules.{hk_index}."
    frozen = {k: v for k, v in weights.items() if not k.startswith(hk_prefix)}
    head = {k: v for k, v in weights.items() if k.startswith(hk_prefix)}
    assert len(frozen) > 10 and len(head) >= 4
    for key, value in frozen.items():
        assert torch.equal(value, exported[key]), key
    assert not all(torch.equal(value, exported[key]) for key, value in head.items())


def _compose(*experiments):
    """The composed ``spktrain`` configs of the named experiments."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="schnetpack.configs", version_base="1.2"):
        return [compose("train", overrides=[f"experiment={name}"]) for name in experiments]


def _assert_same_recipe_under_own_name(cfg, other, name):
    """``cfg`` is ``other`` except for ``run.experiment``, which is ``name``."""
    assert cfg.run.experiment == name
    cfg = cfg.copy()
    cfg.run.experiment = other.run.experiment
    assert cfg == other


def test_phase4_recipe_composes_with_weight_averaging():
    (cfg,) = _compose("qdf_qm9_relu_phase4")
    assert cfg.callbacks.ema._target_ == "schnetpack.train.ExponentialMovingAverage"
    assert cfg.callbacks.ema.decay == 0.999
    assert cfg.trainer.max_epochs == 30 and cfg.task.scheduler_args.T_max == 30
    assert cfg.globals.lr == 3e-4 and cfg.model.representation.activation == "relu"


def test_14_point_relu_recipe_is_the_shipped_recipe_on_a_coarser_grid():
    coarse, shipped = _compose("qdf_qm9_relu14", "qdf_qm9_relu")
    rep, ref = coarse.model.representation, shipped.model.representation
    assert (rep.lebedev_order, rep.n_radial) == (5, 1) and (ref.lebedev_order, ref.n_radial) == (11, 2)
    for key in ("activation", "n_atom_basis", "n_functional_layers", "mixed_precision", "grid_radius"):
        assert rep[key] == ref[key], key
    assert coarse.globals.lr == shipped.globals.lr and coarse.task.hk_mode == shipped.task.hk_mode


def test_phase6_recipe_rotates_training_molecules_only():
    from hydra.utils import instantiate

    from schnetpack_ext.transform import RandomRotation

    cfg, phase4, phase7 = _compose("qdf_qm9_relu_phase6", "qdf_qm9_relu_phase4", "qdf_qm9_relu_phase7")
    _assert_same_recipe_under_own_name(phase7, cfg, "qdf_qm9_relu_phase7")
    for key in ("globals", "trainer", "task", "model"):
        if key == "task":
            assert cfg.task.scheduler_args == phase4.task.scheduler_args
        else:
            assert cfg[key] == phase4[key], key
    data = instantiate(cfg.data, datapath="unused.db", split_file="unused.npz")
    train = [type(t).__name__ for t in data.train_transforms]
    val = [type(t).__name__ for t in data.val_transforms]
    assert train == ["RemoveOffsets", "RandomRotation", "MatScipyNeighborList", "CastTo32"]
    assert val == ["RemoveOffsets", "MatScipyNeighborList", "CastTo32"]
    rotation = data.train_transforms[1]
    assert isinstance(rotation, RandomRotation) and rotation.seed is None


def test_phase8_recipe_validates_on_fixed_rotations():
    """Phase 8 = phase 6's recipe with a seeded rotation in the validation transforms: the
    validation set is rotated, and rotated the same way every epoch."""
    from hydra.utils import instantiate

    from schnetpack_ext.transform import RandomRotation

    cfg, phase6 = _compose("qdf_qm9_relu_phase8", "qdf_qm9_relu_phase6")
    assert cfg.run.experiment == "qdf_qm9_relu_phase8"
    for key in ("globals", "trainer", "task", "model"):
        assert cfg[key] == phase6[key], key
    assert cfg.data.train_transforms == phase6.data.train_transforms
    data = instantiate(cfg.data, datapath="unused.db", split_file="unused.npz")
    val = [type(t).__name__ for t in data.val_transforms]
    assert val == ["RemoveOffsets", "RandomRotation", "MatScipyNeighborList", "CastTo32"]
    rotation = data.val_transforms[1]
    assert isinstance(rotation, RandomRotation) and rotation.seed == 2718
    molecule = {
        "_idx": torch.tensor([7]),
        "_positions": torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.0, 1.4, 0.3]]),
        "_cell": torch.zeros(1, 3, 3),
    }
    first = rotation({k: v.clone() for k, v in molecule.items()})["_positions"]
    again = rotation({k: v.clone() for k, v in molecule.items()})["_positions"]
    torch.testing.assert_close(first, again)  # the same rotation each epoch
    assert not torch.allclose(first, molecule["_positions"], atol=1e-3)  # and a real one
    # training molecules get a fresh rotation per draw
    assert data.train_transforms[1].seed is None


def test_later_phases_are_phase8_under_their_own_names_and_the_l1_pilot_differs_in_the_loss():
    # every cycle after phase 8 (phase 9, 10, ... as far as configs exist) repeats its recipe
    experiments = Path(schnetpack_ext.__file__).parent / "configs" / "experiment"
    numbers = sorted(int(m.group(1)) for f in experiments.glob("qdf_qm9_relu_phase*.yaml")
                     if (m := re.fullmatch(r"qdf_qm9_relu_phase(\d+)", f.stem)) and int(m.group(1)) >= 8)
    assert numbers[:7] == list(range(8, 15)), numbers  # phases 8 to 14 at least, none missing
    assert numbers == list(range(8, numbers[-1] + 1)), numbers
    names = [f"qdf_qm9_relu_phase{n}" for n in numbers]
    phase8, *later = _compose(*names)
    phase10, phase11 = later[1], later[2]
    for phase, name in zip(later, names[1:]):
        _assert_same_recipe_under_own_name(phase, phase8, name)
    # the low-lr comparison of phase 10 ended higher, so phase 11 on keeps the peak of 3e-4
    assert phase11.task.optimizer_args.lr == 3e-4
    assert phase10.data.batch_size == 32  # the batch-8 pilot was not adopted
    (pilot,) = _compose("qdf_qm9_relu_l1_pilot")
    assert pilot.task.outputs[0].loss_fn._target_ == "torch.nn.L1Loss"
    assert phase8.task.outputs[0].loss_fn._target_ == "torch.nn.MSELoss"
    pilot.task.outputs[0].loss_fn._target_ = "torch.nn.MSELoss"
    _assert_same_recipe_under_own_name(pilot, phase8, "qdf_qm9_relu_l1_pilot")  # nothing else differs


def test_low_lr_phase10_differs_from_phase10_only_in_the_peak_learning_rate():
    phase10, low_lr = _compose("qdf_qm9_relu_phase10", "qdf_qm9_relu_phase10_low_lr")
    assert phase10.task.optimizer_args.lr == 3e-4
    assert low_lr.task.optimizer_args.lr == 1e-4
    low_lr.globals.lr = phase10.globals.lr
    _assert_same_recipe_under_own_name(low_lr, phase10, "qdf_qm9_relu_phase10_low_lr")



def test_hk_off_phase23_differs_from_phase23_only_in_the_hk_mode():
    phase23, hk_off = _compose("qdf_qm9_relu_phase23", "qdf_qm9_relu_phase23_hk_off")
    assert phase23.task.hk_mode == "joint"
    assert hk_off.task.hk_mode == "off"  # the string, not YAML's boolean false
    hk_off.task.hk_mode = phase23.task.hk_mode
    _assert_same_recipe_under_own_name(hk_off, phase23, "qdf_qm9_relu_phase23_hk_off")


@pytest.mark.parametrize("experiment, weight", [("qdf_qm9_relu_phase23_hk_weight03", 0.3),
                                                ("qdf_qm9_relu_phase23_hk_weight3", 3.0)])
def test_hk_weight_phase23_differs_from_phase23_only_in_the_hk_weight(experiment, weight):
    phase23, weighted = _compose("qdf_qm9_relu_phase23", experiment)
    assert phase23.globals.hk_weight == 1.0 and weighted.globals.hk_weight == weight
    assert weighted.task.hk_mode == "joint"
    # the potential output's loss weight follows the global (interpolated when composed)
    (hk_output,) = [o for o in weighted.task.outputs if o.name == "hk_potential"]
    assert hk_output.loss_weight == weight
    weighted.globals.hk_weight = phase23.globals.hk_weight
    _assert_same_recipe_under_own_name(weighted, phase23, experiment)


def test_phase24_hk_off_repeats_the_hk_off_cycle_under_its_own_name():
    hk_off, phase24 = _compose("qdf_qm9_relu_phase23_hk_off", "qdf_qm9_relu_phase24_hk_off")
    assert phase24.task.hk_mode == "off"
    _assert_same_recipe_under_own_name(phase24, hk_off, "qdf_qm9_relu_phase24_hk_off")


def test_order17_phase25_differs_from_phase24_in_the_grid_and_cycle_length():
    phase24, phase25 = _compose("qdf_qm9_relu_phase24_hk_off", "qdf_qm9_relu_phase25_order17")
    assert phase24.model.representation.lebedev_order == 11
    assert phase25.model.representation.lebedev_order == 17
    assert phase25.trainer.max_epochs == 20 and phase25.task.scheduler_args.T_max == 20
    assert phase25.task.hk_mode == "off"
    phase25.model.representation.lebedev_order = 11
    phase25.trainer.max_epochs = phase24.trainer.max_epochs
    _assert_same_recipe_under_own_name(phase25, phase24, "qdf_qm9_relu_phase25_order17")


def test_phase26_pairs_and_control_differ_from_phase25_in_the_pairs_and_cycle_length():
    phase25, pairs, control = _compose("qdf_qm9_relu_phase25_order17", "qdf_qm9_relu_phase26_pairs",
                                       "qdf_qm9_relu_phase26_control")
    assert pairs.task.separated_pairs == 0.5 and "separated_pairs" not in control.task
    for phase26, name in ((pairs, "qdf_qm9_relu_phase26_pairs"), (control, "qdf_qm9_relu_phase26_control")):
        assert phase26.trainer.max_epochs == 12 and phase26.task.scheduler_args.T_max == 12
        phase26.trainer.max_epochs = phase25.trainer.max_epochs
        if "separated_pairs" in phase26.task:
            del phase26.task.separated_pairs
        _assert_same_recipe_under_own_name(phase26, phase25, name)


def test_phase26_local_differs_from_phase25_in_the_normalisation_and_cycle_length():
    phase25, local = _compose("qdf_qm9_relu_phase25_order17", "qdf_qm9_relu_phase26_local")
    assert local.model.representation.normalisation == "local"
    assert local.model.representation.local_width == 1.5
    assert local.model.representation.lebedev_order == 17
    assert local.trainer.max_epochs == 10 and local.task.scheduler_args.T_max == 10
    del local.model.representation.normalisation, local.model.representation.local_width
    local.trainer.max_epochs = phase25.trainer.max_epochs
    _assert_same_recipe_under_own_name(local, phase25, "qdf_qm9_relu_phase26_local")


def test_hk_refit_trains_the_hk_head_alone_on_order17():
    phase24, refit = _compose("qdf_qm9_relu_phase24_hk_off", "qdf_qm9_relu_hk_refit")
    assert refit.task.trainable == "hk" and refit.task.hk_mode == "joint"
    assert refit.model.representation.lebedev_order == 17
    assert refit.task.optimizer_args.lr == 1e-3
    assert refit.trainer.max_epochs == 10 and refit.task.scheduler_args.T_max == 10
    del refit.task.trainable
    refit.task.hk_mode = phase24.task.hk_mode
    refit.model.representation.lebedev_order = 11
    refit.globals.lr = phase24.globals.lr
    refit.trainer.max_epochs = phase24.trainer.max_epochs
    _assert_same_recipe_under_own_name(refit, phase24, "qdf_qm9_relu_hk_refit")


def test_local_normalisation_run_differs_from_phase14_in_the_normalisation_and_cycle_length():
    phase14, local = _compose("qdf_qm9_relu_phase14", "qdf_qm9_relu_local")
    assert local.model.representation.normalisation == "local"
    assert local.model.representation.local_width == 1.5
    assert local.trainer.max_epochs == 15 and local.task.scheduler_args.T_max == 15
    del local.model.representation.normalisation, local.model.representation.local_width
    local.trainer.max_epochs = phase14.trainer.max_epochs
    _assert_same_recipe_under_own_name(local, phase14, "qdf_qm9_relu_local")


def test_a_run_with_weight_averaging_saves_the_averaged_weights(tmp_path):
    """SchNetPack's EMA callback (on by default, decay 0.995; phase 4 sets 0.999): validation,
    checkpoints and ``best_model`` hold the moving average of the weights, not the last step."""
    run = run_spktrain(tmp_path, "ema", "qdf_qm9_smoke", *TINY_QDF, "trainer.max_epochs=2",
                       "callbacks.ema.decay=0.5", timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ckpt = torch.load(tmp_path / "runs" / "ema" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    (ema,) = [v["ema"] for k, v in ckpt["callbacks"].items() if "ExponentialMovingAverage" in k]
    assert ema["num_updates"] == 4  # 2 epochs of 2 batches
    model = torch.load(tmp_path / "runs" / "ema" / "best_model", map_location="cpu", weights_only=False)
    params = list(model.parameters())
    assert len(params) == len(ema["shadow_params"]) > 10
    for saved, average in zip(params, ema["shadow_params"]):
        torch.testing.assert_close(saved, average.to(saved.dtype))
    # the raw weights of the last step differ from their average
    assert any(not torch.equal(raw, average) for raw, average in zip(ema["collected_params"], ema["shadow_params"]))


def test_reproduce_script_trains_the_shipped_model_from_existing_configs():
    """``reproduce.sh`` (the model card's one command) names only experiment configs that exist,
    and its last export, the shipped file, is the experiment recorded in the shipped file."""
    from ase_qdf import model_io

    root = Path(__file__).resolve().parents[2]
    script = (root / "docs" / "benchmarks" / "training_qdf_relu_bf16" / "reproduce.sh").read_text()
    loop = re.search(r"^for n in ([\d ]+); do$", script, re.M)
    assert loop, "the cycle loop of reproduce.sh changed: update this test"
    numbers = [int(n) for n in loop.group(1).split()]
    # every phase from 3 to the shipped one's start is trained, in order
    assert numbers == list(range(3, numbers[-1] + 1))
    named = [m for m in re.findall(r"experiment=([\w$]+)", script) if "$" not in m]
    experiments = Path(schnetpack_ext.__file__).parent / "configs" / "experiment"
    for name in [f"qdf_qm9_relu_phase{n}" for n in numbers] + named:
        assert (experiments / f"{name}.yaml").is_file(), name
    *_, last = re.finditer(r"--meta experiment=(\w+)[^\n]*\n[^\n]*--register qdf_qm9", script)
    shipped = read_model_file(model_io.default_model_path())  # the file's metadata, no model built
    assert last.group(1) == shipped["metadata"]["experiment"]


def test_phase27_local_runs_differ_from_phase26_local_in_the_local_cutoff_only():
    phase26, cutoff30, cutoff35 = _compose("qdf_qm9_relu_phase26_local", "qdf_qm9_relu_phase27_local_cutoff30",
                                           "qdf_qm9_relu_phase27_local_cutoff35")
    assert "local_cutoff" not in phase26.model.representation  # the neighbour-list cutoff, 4.75 Å
    for phase27, cutoff, name in ((cutoff30, 3.0, "qdf_qm9_relu_phase27_local_cutoff30"),
                                  (cutoff35, 3.5, "qdf_qm9_relu_phase27_local_cutoff35")):
        assert phase27.model.representation.local_cutoff == cutoff
        assert phase27.model.representation.normalisation == "local"
        del phase27.model.representation.local_cutoff
        _assert_same_recipe_under_own_name(phase27, phase26, name)


@pytest.mark.parametrize("base, continued_name, lr, epochs", [
    ("qdf_qm9_relu_phase27_local_cutoff30", "qdf_qm9_relu_phase27_local_cutoff30_continued", 1.5e-4, 6),
    # session 28 trained phase 28 as ``..._continued globals.lr=1e-4 trainer.max_epochs=8``; its own config
    # must compose to exactly that
    ("qdf_qm9_relu_phase27_local_cutoff30_continued", "qdf_qm9_relu_phase28_local_cutoff30_continued2", 1e-4, 8),
])
def test_local_cutoff30_continuations_differ_from_their_base_in_the_rate_and_cycle_length(base, continued_name, lr,
                                                                                          epochs):
    start, continued = _compose(base, continued_name)
    assert continued.model.representation.local_cutoff == 3.0
    assert continued.task.optimizer_args.lr == lr
    assert continued.trainer.max_epochs == epochs and continued.task.scheduler_args.T_max == epochs
    continued.globals.lr = start.globals.lr
    continued.trainer.max_epochs = start.trainer.max_epochs
    _assert_same_recipe_under_own_name(continued, start, continued_name)


def test_painn_member_is_the_painn_baseline_on_qdfs_cutoff_with_a_cosine_cycle():
    """``painn_qm9_member`` (the first PaiNN member of ``qdf_qm9_hybrid``) changes the PaiNN baseline in
    the cutoff (QDF's, so one neighbour list serves the average) and the schedule only."""
    baseline, member, qdf = _compose("painn_qm9_under14", "painn_qm9_member", "qdf_qm9_relu")
    assert member.globals.cutoff == qdf.globals.cutoff == 4.75 != baseline.globals.cutoff
    assert member.model.representation.cutoff_fn.cutoff == member.model.representation.radial_basis.cutoff == 4.75
    assert member.task.scheduler_cls.endswith("CosineAnnealingLR")
    assert member.task.scheduler_args.T_max == member.trainer.max_epochs == 40
    for key in ("_target_", "n_atom_basis", "n_interactions", "shared_interactions", "shared_filters"):
        assert member.model.representation[key] == baseline.model.representation[key], key
    assert member.model.representation.radial_basis.n_rbf == baseline.model.representation.radial_basis.n_rbf
    assert member.globals.lr == baseline.globals.lr and member.data.batch_size == baseline.data.batch_size


@pytest.mark.parametrize("name", ["painn_qm9_member2", "painn_qm9_member3"])
def test_further_painn_members_differ_from_the_first_in_the_training_seed_only(name):
    """``painn_qm9_member2`` and ``_member3``: other training seeds, the same split (its seed is separate)."""
    first, second, third = _compose("painn_qm9_member", "painn_qm9_member2", "painn_qm9_member3")
    assert len({first.seed, second.seed, third.seed}) == 3
    other = {"painn_qm9_member2": second, "painn_qm9_member3": third}[name]
    assert other.data.split_seed == first.data.split_seed == 1729
    other.seed = first.seed
    _assert_same_recipe_under_own_name(other, first, name)
