"""Optuna tuning on train -> val, final runs on train+val, and studies kept in the store."""

import optuna
import pytest
from conftest import add_method, digest, tiny_run
from optuna.trial import TrialState

from peftbench import registry, tuning
from peftbench.cli import main
from peftbench.methods.lora import LoRA
from peftbench.store import Store


def studies(store):
    return {s.study_name: s for s in optuna.get_all_study_summaries(tuning.storage(Store(store).url))}


def trial_states(store, name):
    study = optuna.load_study(study_name=name, storage=tuning.storage(Store(store).url))
    return [t.state for t in study.trials]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("tuned") / "r.db")
    assert main(tiny_run("lora", epochs=2, trials=3, seeds=2, store=store)) == 0
    return store


@pytest.mark.slow  # a tuned sweep: the module's store, 3 trials and 2 seeds
def test_trials_see_val_only_and_the_best_one_is_retrained_with_each_seed(tuned):
    records = Store(tuned).records()
    trials = [r for r in records if r["phase"] == "tune"]
    finals = [r for r in records if r["phase"] == "final"]
    assert sorted(r["details"]["slot"] for r in trials) == [0, 1, 2]
    assert sorted(r["seed"] for r in finals) == [0, 1]
    for r in trials:
        assert r["status"] in ("ok", "pruned") and r["test_metric"] is None
        # the first epoch's score can prune nothing (the pruner waits for the second): only the last is scored
        assert r["details"]["val_epochs"] == [2] and len(r["details"]["val_curve"]) == 1
        assert r["val_metric"] == r["details"]["val_curve"][-1]
        assert r["settings"]["targets"] == ["q", "v"] and r["budget_params"] == 4096
        assert tuning.LEARNING_RATE[0] <= r["hparams"]["lr"] <= tuning.LEARNING_RATE[1]
        assert tuning.LEARNING_RATE[0] <= r["hparams"]["head_lr"] <= tuning.LEARNING_RATE[1]
    assert len({r["hparams"]["lr"] for r in trials}) == 3
    first = next(r for r in trials if r["details"]["slot"] == 0)
    # the literature defaults, and the head's shared default, are always a candidate
    assert first["hparams"] == {**LoRA.defaults, "head_lr": tuning.HEAD_LR}
    best = max((r for r in trials if r["status"] == "ok"), key=lambda r: r["val_metric"])
    for r in finals:
        assert r["hparams"] == best["hparams"] and r["details"]["selected"]["slot"] == best["details"]["slot"]
        assert r["val_metric"] is None and 0 <= r["test_metric"] <= 1


@pytest.mark.slow  # a tuned sweep: the module's store, 3 trials and 2 seeds
def test_the_study_lives_in_the_store_named_by_task_method_budget_and_backbone(tuned):
    (name,) = studies(tuned)
    assert name.startswith("quick/digits|lora|lora[r=8]|tiny-dinov2|")
    states = trial_states(tuned, name)
    assert len(states) == 3 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}


@pytest.mark.slow  # a tuned sweep: the module's store, 3 trials and 2 seeds
def test_rerunning_without_resume_refuses_and_leaves_the_store_alone(tuned, capsys):
    before = digest(tuned)
    assert main(tiny_run("lora", epochs=2, trials=3, seeds=2, store=tuned)) == 2
    assert "--resume" in capsys.readouterr().err
    assert digest(tuned) == before


@pytest.mark.slow  # two tuned sweeps
def test_more_trials_continue_the_same_study(tmp_path):
    store = str(tmp_path / "r.db")
    assert main(tiny_run("lora", epochs=2, trials=1, seeds=1, store=store)) == 0
    first = {r["spec_key"]: r for r in Store(store).records(phase="tune")}
    assert main(tiny_run("lora", "--resume", epochs=2, trials=2, seeds=1, store=store)) == 0
    tune = Store(store).records(phase="tune")
    assert len(tune) == 2 and all(first[k] in tune for k in first)  # trial 1 kept, not redone
    (name,) = studies(store)
    assert len(trial_states(store, name)) == 2
    finals = Store(store).records(phase="final")
    assert sorted(r["settings"]["trials"] for r in finals) == [1, 2]  # a final run per trial budget


def test_no_trials_means_the_literature_defaults(tmp_path):
    store = str(tmp_path / "r.db")
    assert main(tiny_run("lora", epochs=2, trials=0, seeds=1, store=store)) == 0
    (record,) = Store(store).records()
    assert record["phase"] == "final" and record["hparams"] == {**LoRA.defaults, "head_lr": tuning.HEAD_LR}
    assert record["details"]["selected"] == {"by": "defaults"}
    assert not studies(store)


class PoisonedLoRA(LoRA):
    """LoRA whose first trial's configuration makes the loss NaN."""

    name = "poisoned"

    def search_space(self, trial):
        return {"poison": trial.number == 0}

    def apply(self, backbone, size, hparams):
        model = super().apply(backbone, size, hparams)
        if hparams.get("poison"):
            model.register_forward_hook(lambda module, args, out: out * float("nan"))
        return model


@pytest.mark.slow  # a tuned sweep
def test_a_nan_trial_is_failed_with_its_reason_and_the_sweep_goes_on(tmp_path, monkeypatch):
    add_method(monkeypatch, PoisonedLoRA)
    store = str(tmp_path / "r.db")
    assert main(tiny_run("poisoned", epochs=2, trials=2, seeds=1, store=store)) == 1
    trials = {r["details"]["slot"]: r for r in Store(store).records(phase="tune")}
    assert trials[0]["status"] == "failed" and "TrainingDiverged" in trials[0]["error"]
    assert "nan" in trials[0]["error"]
    assert trials[1]["status"] == "ok"
    (final,) = Store(store).records(phase="final")
    assert final["status"] == "ok" and final["hparams"]["poison"] is False
    (name,) = studies(store)
    assert trial_states(store, name) == [TrialState.FAIL, TrialState.COMPLETE]


def test_intermediate_epochs_are_scored_only_where_the_median_pruner_can_act():
    # two trials: neither can ever be pruned, so only the last epoch's score (the trial's value) counts
    assert not any(tuning.may_prune(2, epoch) for epoch in range(5))
    # more trials: every epoch but the first, which the pruner's warm-up ignores
    assert [tuning.may_prune(8, epoch) for epoch in range(3)] == [False, True, True]
    pruner = tuning.open_study("sqlite://", "s", True, trials=3).pruner
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (tuning.PRUNE_STARTUP_TRIALS,
                                                                  tuning.PRUNE_WARMUP_EPOCHS)


def test_best_respects_the_direction_and_skips_unfinished_trials():
    def trial(slot, value, status="ok"):
        return {"status": status, "val_metric": value, "details": {"slot": slot}}

    records = [trial(0, 0.5), trial(1, 0.9, "pruned"), trial(2, 0.7), trial(3, 0.7), trial(4, None, "failed")]
    assert tuning.best(records, higher_is_better=True)["details"]["slot"] == 2  # the earliest of a tie
    assert tuning.best(records, higher_is_better=False)["details"]["slot"] == 0
    assert tuning.best([trial(0, None, "failed")], higher_is_better=True) is None


def test_a_slot_samples_the_same_configuration_whatever_came_before():
    study = optuna.create_study()
    first = tuning.search_space(LoRA(), tuning.ask(study, "s", 3, trials=10, fixed={"lr": 1e-3}), True)
    study.ask()  # a trial in between, as a crashed worker leaves behind
    again = tuning.search_space(LoRA(), tuning.ask(study, "s", 3, trials=10, fixed={"lr": 1e-3}), True)
    assert first == again
    other = tuning.search_space(LoRA(), tuning.ask(study, "s", 4, trials=10, fixed={"lr": 1e-3}), True)
    assert other != first


def test_every_built_in_method_is_tuned_over_the_same_shared_space():
    spaces = {name: tuning.describe_space(cls()) for name, cls in registry.methods().loaded.items()}
    shared = {k: spaces["lora"][k] for k in ("lr", "weight_decay", "head_lr")}
    for name, space in spaces.items():
        assert all(space[k] == v for k, v in shared.items() if k in space), name
        assert "head_lr" in space and "weight_decay" in space and ("lr" in space) == (name != "linear")
    # (the linear probe trains nothing in the backbone: the head's lr is its only step)
    low, high = tuning.LEARNING_RATE
    for name, cls in registry.methods().loaded.items():  # a decade either side of every published default
        if "lr" in cls.defaults:
            assert low * 10 <= cls.defaults["lr"] <= high / 10, name


def test_the_head_trains_at_its_own_learning_rate():
    import torch

    from peftbench.train import Classifier, TrainConfig, param_groups

    model = Classifier(torch.nn.Linear(4, 3), 3, 2)
    groups = param_groups(model, TrainConfig(epochs=1, batch_size=1, lr=1e-4, head_lr=1e-2, weight_decay=0, seed=0))
    assert [(g["lr"], sum(p.numel() for p in g["params"])) for g in groups] == [(1e-4, 15), (1e-2, 8)]


class ReadLog:
    """A test split that notes which phase read it."""

    def __init__(self, data):
        self.data, self.phase, self.reads = data, None, []

    def __len__(self):
        self.reads.append(self.phase)
        return len(self.data)

    def __getitem__(self, i):
        self.reads.append(self.phase)
        return self.data[i]


@pytest.mark.slow  # a tuned sweep of two methods
def test_only_final_runs_read_the_test_split(tmp_path, monkeypatch):
    from dataclasses import replace

    from peftbench.runner import RunOptions, Sweep
    from peftbench.schedule import Scheduler

    sweep = Sweep("lora,linear", "quick/digits", RunOptions(backbone="tiny-dinov2", image_size=28, epochs=1, trials=2,
                                                           seeds=1, progress=False))
    splits = sweep.plan().splits
    test = ReadLog(splits["quick/digits"].test)
    splits["quick/digits"] = replace(splits["quick/digits"], test=test)
    for phase, original in (("tune", Scheduler.tune), ("final", Scheduler.final)):
        def traced(self, *args, original=original, phase=phase):
            test.phase = phase
            try:
                return original(self, *args)
            finally:
                test.phase = None
        monkeypatch.setattr(Scheduler, phase, traced)
    records = sweep.run(Store(str(tmp_path / "r.db")))
    assert sorted(r.phase for r in records) == ["final"] * 2 + ["tune"] * 4
    assert all(r.status == "ok" for r in records)
    assert set(test.reads) == {"final"}  # read, and by final runs alone


def test_a_default_outside_the_space_is_left_to_the_sampler():
    class NoDecay(LoRA):
        defaults = {**LoRA.defaults, "weight_decay": 0.0}  # 0 has no place on a log scale

    assert tuning.first_trial(NoDecay(), head=True) == {"lr": 1e-3, "head_lr": tuning.HEAD_LR,
                                                         "alpha_over_r": 1.0, "dropout": 0.0}
    study = optuna.create_study()
    trial = tuning.ask(study, "s", 0, trials=2, fixed=tuning.first_trial(NoDecay(), head=True))
    hparams = tuning.search_space(NoDecay(), trial, True)
    assert hparams["lr"] == 1e-3 and tuning.WEIGHT_DECAY[0] <= hparams["weight_decay"] <= tuning.WEIGHT_DECAY[1]


# ---- protocol 2: a floor of completed trials, several seeds per trial, the protocol recorded ------

def test_the_pruner_waits_until_half_the_study_s_trials_have_completed():
    assert [tuning.prune_startup(n) for n in (1, 2, 3, 4, 5, 8, 9, 20)] == [2, 2, 2, 2, 3, 4, 5, 10]
    study = tuning.open_study("sqlite://", "floor-of-8", higher_is_better=True, trials=8)
    assert study.pruner._n_startup_trials == 4

    def trial_at(value):
        trial = study.ask()
        trial.report(value, 1)  # after the second epoch: past the warm-up
        return trial

    for value in (0.9, 0.8, 0.85):
        study.tell(trial_at(value), value)
    hopeless = trial_at(0.01)
    assert not hopeless.should_prune()  # three completed of eight: the old protocol pruned it here
    study.tell(hopeless, 0.01)
    assert trial_at(0.01).should_prune()  # four completed: the pruner may act


def test_a_sweep_shared_by_workers_waits_where_the_floor_lets_pruning_act():
    # eight trials: four random slots, and no pruning before four completed trials, so the first
    # four slots run in any order and the others wait for the slots before them
    assert [tuning.independent(slot, 8) for slot in range(8)] == [True] * 4 + [False] * 4
    assert [tuning.independent(slot, 3) for slot in range(3)] == [True, False, False]
    assert [tuning.independent(slot, 20) for slot in range(12)] == [True] * 10 + [False] * 2


def test_every_run_records_the_tuning_protocol_and_it_names_new_studies():
    from peftbench.recipe import Recipe

    settings = Recipe().settings()
    assert tuning.PROTOCOL == 2 and settings["protocol"] == 2 and settings["tune_seeds"] == 1
    old = {k: v for k, v in settings.items() if k not in ("protocol", "tune_seeds")}  # a protocol-1 record's
    assert tuning.study_name("t", "m", "b", "bb", 1.0, settings) != tuning.study_name("t", "m", "b", "bb", 1.0, old)


def test_tune_seeds_is_a_positive_recipe_setting_and_hmoe_tunes_on_three():
    from peftbench.errors import UsageError
    from peftbench.recipe import Recipe
    from tasks.hmoe import HMOE

    assert Recipe.build("hmoe", HMOE.recipe, {}).tune_seeds == 3
    with pytest.raises(UsageError, match="tune_seeds"):
        Recipe.build("s", {"tune_seeds": 0}, {})


@pytest.fixture(scope="module")
def multi_seed(tmp_path_factory):
    """hmoe (whose recipe tunes on 3 seeds), short: eight trials of lora on the smallest fraction."""
    store = str(tmp_path_factory.mktemp("multi_seed") / "r.db")
    assert main(["run", "--methods", "lora", "--tasks", "hmoe/shared", "--trials", "8", "--seeds", "1",
                 "--epochs", "3", "--epoch-samples", "128", "--fractions", "0.00390625", "--store", store,
                 "--no-progress"]) == 0
    return Store(store).records()


def test_a_trial_s_val_score_is_the_mean_over_its_tune_seeds_which_it_keeps(multi_seed):
    import statistics

    trials = [r for r in multi_seed if r["phase"] == "tune"]
    assert len(trials) == 8
    for r in trials:
        assert r["settings"]["tune_seeds"] == 3 and r["settings"]["protocol"] == tuning.PROTOCOL
        assert r["seed"] == 0
        if r["status"] == "ok":
            per_seed = r["details"]["val_per_seed"]
            assert len(per_seed) == 3 and len(set(per_seed)) == 3  # three seeds, three scores
            assert r["details"]["val_seeds"] == [0, 1, 2]
            assert r["val_metric"] == statistics.fmean(per_seed)
            assert per_seed[0] == r["details"]["val_curve"][-1]  # the first seed's curve is the one pruned on
        else:
            assert r["status"] == "pruned" and "val_per_seed" not in r["details"]
    (final,) = [r for r in multi_seed if r["phase"] == "final"]
    chosen = tuning.best(trials, higher_is_better=False)
    assert final["details"]["selected"]["val_metric"] == chosen["val_metric"]
    assert final["details"]["selected"]["val_per_seed"] == chosen["details"]["val_per_seed"]
    assert final["settings"]["protocol"] == tuning.PROTOCOL


def test_no_trial_of_a_sweep_is_pruned_before_half_the_trials_completed(multi_seed):
    trials = sorted((r for r in multi_seed if r["phase"] == "tune"), key=lambda r: r["details"]["slot"])
    completed = 0
    for r in trials:
        if r["status"] == "pruned":
            assert completed >= tuning.prune_startup(8) == 4
        completed += r["status"] == "ok"
