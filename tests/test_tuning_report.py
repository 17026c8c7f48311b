"""The tuning report: per-study trial counts, winner, convergence, margin, noise and stability."""

import statistics

import pytest

from peftbench import tuning_report as tr

STUDY = "hmoe/shared|lora|lora[r=8]|hmoe-attention|1|abcd1234"


def trial(slot, value, status="ok", per_seed=None, method="lora", study=STUDY, metric="mse", protocol=None):
    details = {"study": study, "slot": slot, "trial": slot}
    if per_seed is not None:
        details["val_per_seed"] = per_seed
    settings = {"trials": 4, "tune_seeds": len(per_seed) if per_seed else 1}
    if protocol is not None:
        settings["protocol"] = protocol
    return {"phase": "tune", "status": status, "val_metric": value if status == "ok" else None,
            "test_metric": None, "details": details, "method": method, "suite": "hmoe", "task": "shared",
            "budget": "lora[r=8]", "data_fraction": 1.0, "metric": metric, "settings": settings, "seed": 0}


def final(seed, test, study=STUDY, slot=0, trials=4, method="lora", metric="mse"):
    return {"phase": "final", "status": "ok", "val_metric": None, "test_metric": test, "seed": seed,
            "details": {"selected": {"by": "val", "study": study, "slot": slot}}, "method": method,
            "suite": "hmoe", "task": "shared", "budget": "lora[r=8]", "data_fraction": 1.0, "metric": metric,
            "settings": {"trials": trials}}


def test_counts_winner_margin_and_the_final_seeds_as_the_noise_proxy():
    tune = [trial(0, 0.50), trial(1, None, "pruned"), trial(2, 0.40), trial(3, None, "failed")]
    finals = [final(0, 0.41), final(1, 0.43), final(2, 0.45)]
    (s,) = tr.studies(tune + finals)
    assert (s["trials"], s["completed"], s["pruned"], s["failed"], s["finals"]) == (4, 2, 1, 1, 3)
    assert s["winner_slot"] == 2 and s["defaults_won"] is False and s["higher_is_better"] is False
    assert s["margin"] == pytest.approx(0.10)  # lower is better: the runner-up is 0.1 worse
    assert s["noise"] == pytest.approx(0.02) and s["noise_source"] == tr.NOISE_FINAL_SEEDS
    assert s["margin_below_noise"] is False
    assert s["best_so_far"] == [0.50, 0.50, 0.40, 0.40]
    assert s["protocol"] == 1  # no marker: a protocol-1 record


def test_direction_aware_for_accuracy_and_the_defaults_win_a_tie():
    tune = [trial(0, 0.8, metric="accuracy"), trial(1, 0.7, metric="accuracy"), trial(2, 0.8, metric="accuracy")]
    (s,) = tr.studies(tune)
    assert s["higher_is_better"] is True and s["winner_slot"] == 0 and s["defaults_won"] is True
    assert s["margin"] == 0.0 and s["best_so_far"] == [0.8, 0.8, 0.8]
    assert s["noise"] is None and s["margin_below_noise"] is None  # no finals, one tune seed: no noise estimate


def test_the_noise_of_several_tune_seeds_is_the_winner_s_and_finals_of_other_trial_counts_are_left_out():
    tune = [trial(0, 0.30, per_seed=[0.29, 0.30, 0.31], protocol=2),
            trial(1, 0.301, per_seed=[0.30, 0.302, 0.301], protocol=2)]
    finals = [final(0, 0.2, trials=2), final(1, 0.9, trials=2), final(0, 5.0, trials=8)]
    (s,) = tr.studies(tune + finals)
    assert s["protocol"] == 2 and s["tune_seeds"] == 3 and s["finals"] == 2
    assert s["noise"] == pytest.approx(statistics.stdev([0.29, 0.30, 0.31]))
    assert s["noise_source"] == tr.NOISE_TUNE_SEEDS
    assert s["margin"] == pytest.approx(0.001) and s["margin_below_noise"] is True


def test_stability_is_deterministic_one_for_a_clear_winner_and_lower_for_a_noisy_one():
    clear = [trial(0, 1.0), trial(1, 0.5), trial(2, 0.9)]
    assert tr.stability(clear, higher=False, noise_sd=0.001) == 1.0
    assert tr.stability(clear, higher=False) == 1.0  # the trials alone never unseat the winner
    noisy = [trial(0, 0.500), trial(1, 0.501), trial(2, 0.502), trial(3, 0.9)]
    value = tr.stability(noisy, higher=False, noise_sd=0.01)
    assert 0.2 < value < 0.9 and value == tr.stability(noisy, higher=False, noise_sd=0.01)
    assert tr.stability([trial(0, None, "pruned")], higher=False) is None
    # with per-seed values, each trial's seeds are resampled instead of adding noise
    seeds = [trial(0, 0.50, per_seed=[0.40, 0.50, 0.60]), trial(1, 0.51, per_seed=[0.41, 0.51, 0.61])]
    assert 0.3 < tr.stability(seeds, higher=False) < 0.9


def test_the_method_summary_counts_defaults_completed_trials_and_margins_below_the_noise():
    other = "hmoe/shared|hora|lora[r=8]|hmoe-attention|1|abcd1234"
    # lora: margin 0.05, below the final seeds' sd of 0.07; hora: the defaults win by far
    records = ([trial(0, 0.5), trial(1, 0.4), trial(2, 0.45), final(0, 0.40, trials=3), final(1, 0.50, trials=3)]
               + [trial(0, 0.3, method="hora", study=other), trial(1, None, "pruned", method="hora", study=other),
                  trial(2, 0.6, method="hora", study=other),
                  final(0, 0.30, study=other, method="hora", trials=3),
                  final(1, 0.30001, study=other, method="hora", trials=3)])
    rows = tr.studies(records)
    summary = tr.method_summary(rows)
    assert summary["lora"] == {"studies": 1, "defaults_won": 0, "median_completed": 3, "margin_below_noise": 1,
                               "margin_judged": 1, "median_stability": rows[1]["stability"]}
    assert summary["hora"]["defaults_won"] == 1 and summary["hora"]["margin_below_noise"] == 0
    assert summary["hora"]["median_completed"] == 2
    total = tr.overall(rows)
    assert (total["studies"], total["defaults_won"], total["margin_below_noise"], total["at_most_3_completed"]) == \
        (2, 1, 1, 2)
