"""ASHA and Hyperband arithmetic: rungs, brackets, promotions, the rung TPE models."""

from __future__ import annotations

from collections import Counter

from trials.scheduling import (
    bracket_for,
    bracket_weights,
    model_epoch,
    promotions,
    rung_epochs,
    rung_scores,
    search_rank,
)


def test_rungs_are_min_epochs_times_powers_of_the_reduction_below_the_top():
    assert rung_epochs(5, 3, 50) == [5, 15, 45]
    assert rung_epochs(1, 3, 27) == [1, 3, 9]  # 27 is the top, not a rung
    assert rung_epochs(2, 2, 17) == [2, 4, 8, 16]
    assert rung_epochs(10, 3, 11) == [10]


def test_hyperband_brackets_get_hyperbands_budgets():
    # s_max = 3 rungs: brackets start at rung 0, 1, 2 and at the top
    assert bracket_weights(3, 3) == [27, 12, 6, 4]
    draws = Counter(bracket_for(t, seed=0, weights=[27, 12, 6, 4]) for t in range(4900))
    assert draws[0] > draws[1] > draws[2] > draws[3] > 0
    assert bracket_for(7, 0, [27, 12, 6, 4]) == bracket_for(7, 0, [27, 12, 6, 4])  # reproducible


def trial(tid, scores, paused_at=None, bracket=0):
    return {"tid": tid, "bracket": bracket, "outcome": "paused" if paused_at else "ok",
            "limit": paused_at, "result": {"rung_scores": {str(e): s for e, s in scores.items()}}}


def test_a_paused_trial_is_promoted_as_soon_as_it_is_in_the_top_third():
    grid, top = [1, 3], 9
    ts = [trial(0, {1: 0.5}, paused_at=1)]
    assert promotions(ts, grid, top, 3) == []  # alone: the top third of 1 is nobody
    ts += [trial(1, {1: 0.3}, paused_at=1), trial(2, {1: 0.2}, paused_at=1)]
    assert promotions(ts, grid, top, 3) == [(0, 3)]  # three at rung 1: the best goes on
    ts += [trial(3, {1: 0.9}, paused_at=1)]
    assert promotions(ts, grid, top, 3) == [(3, 3)]  # four: still one slot, now trial 3's
    ts[0] = trial(0, {1: 0.5, 3: 0.6}, paused_at=3)  # promoted earlier, paused at rung 3
    assert (0, 9) not in promotions(ts, grid, top, 3)  # alone at rung 3


def test_promotions_are_judged_within_each_bracket():
    grid = [1, 3]
    ts = [trial(t, {1: 0.1 * t}, paused_at=1, bracket=t % 2) for t in range(6)]
    got = promotions(ts, grid, 9, 3)
    assert sorted(got) == [(4, 3), (5, 3)]  # the best of each bracket's three


def test_rung_scores_are_the_best_accuracy_up_to_each_rung_reached():
    curve = [{"epoch": e, "val_acc": v} for e, v in [(1, 0.2), (2, 0.5), (3, 0.4), (4, 0.45)]]
    assert rung_scores(curve, [1, 3, 9]) == {"1": 0.2, "3": 0.5}


def test_tpe_models_the_highest_rung_with_enough_scores():
    grid, top = [1, 3], 9
    ts = [trial(t, {1: 0.5}) for t in range(10)] + [trial(10 + t, {1: 0.5, 3: 0.6})
                                                     for t in range(4)]
    assert model_epoch(ts, grid, top, n_min=4) == 3
    assert model_epoch(ts, grid, top, n_min=5) == 1
    assert model_epoch([], grid, top, n_min=3) is None


def test_a_trial_stopped_low_never_outranks_one_that_reached_the_top():
    low = trial(0, {1: 0.99})
    high = trial(1, {1: 0.5, 3: 0.6, 9: 0.7})
    assert search_rank(high, [1, 3], 9) > search_rank(low, [1, 3], 9)
