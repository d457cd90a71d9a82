"""ASHA and Hyperband arithmetic: rungs, brackets, promotions, the rung TPE models."""

from __future__ import annotations

import math
from collections import Counter

from trials.records import JobRecord
from trials.scheduling import (
    best_paused,
    bracket_for,
    bracket_weights,
    model_epoch,
    promotions,
    rung_epochs,
    rung_scores,
    search_rank,
)


def test_rungs_are_min_epochs_times_powers_of_the_reduction_up_to_the_top_over_eta():
    assert rung_epochs(5, 3, 50) == [5, 15]  # 45 would save 5 epochs of 50 per stopped trial
    assert rung_epochs(1, 3, 27) == [1, 3, 9]  # 27 is the top, not a rung
    assert rung_epochs(2, 2, 17) == [2, 4, 8]
    assert rung_epochs(1, 3, 9) == [1, 3]
    assert rung_epochs(10, 3, 29) == []  # 30 > 29: min_epochs is too large (the API says so)
    # s_max = floor(log_eta(R / r)) = the number of rungs
    for r, eta, top in [(5, 3, 50), (1, 3, 27), (2, 2, 17), (1, 4, 100), (3, 2, 50)]:
        assert len(rung_epochs(r, eta, top)) == int(math.log(top / r, eta) + 1e-9)


def test_hyperband_brackets_get_hyperbands_budgets():
    # s_max = 3 rungs: brackets start at rung 0, 1, 2 and at the top
    assert bracket_weights(3, 3) == [27, 12, 6, 4]
    draws = Counter(bracket_for(t, seed=0, weights=[27, 12, 6, 4]) for t in range(4900))
    assert draws[0] > draws[1] > draws[2] > draws[3] > 0
    assert bracket_for(7, 0, [27, 12, 6, 4]) == bracket_for(7, 0, [27, 12, 6, 4])  # reproducible


def trial(tid, scores, paused_at=None, bracket=0):
    return JobRecord({"tid": tid, "bracket": bracket, "outcome": "paused" if paused_at else "ok",
                      "limit": paused_at, "state": 2,
                      "result": {"rung_scores": {str(e): s for e, s in scores.items()}}})


def test_a_paused_trial_is_promoted_as_soon_as_it_is_in_the_top_third():
    grid, top = [1, 3], 9
    ts = [trial(0, {1: 0.5}, paused_at=1)]
    assert promotions(ts, grid, top, 3) == []  # alone: the top third of 1 is nobody
    ts += [trial(1, {1: 0.3}, paused_at=1), trial(2, {1: 0.2}, paused_at=1)]
    assert promotions(ts, grid, top, 3) == [(0, 1, 3)]  # three at rung 1: the best goes on
    ts += [trial(3, {1: 0.9}, paused_at=1)]
    assert promotions(ts, grid, top, 3) == [(3, 1, 3)]  # four: still one slot, now trial 3's
    ts[0] = trial(0, {1: 0.5, 3: 0.6}, paused_at=3)  # promoted earlier, paused at rung 3
    assert (0, 3, 9) not in promotions(ts, grid, top, 3)  # alone at rung 3


def test_promotions_are_judged_within_each_bracket():
    grid = [1, 3]
    ts = [trial(t, {1: 0.1 * t}, paused_at=1, bracket=t % 2) for t in range(6)]
    got = promotions(ts, grid, 9, 3)
    assert sorted(got) == [(4, 1, 3), (5, 1, 3)]  # the best of each bracket's three


def test_promotions_from_the_highest_rung_go_first():
    grid, top = [1, 3, 9], 27
    ts = [trial(t, {1: 0.91 + 0.01 * t}, paused_at=1) for t in range(6)]
    ts += [trial(10 + t, {1: 0.1, 3: 0.95 - 0.3 * t}, paused_at=3) for t in range(3)]
    ts += [trial(20 + t, {1: 0.1, 3: 0.1, 9: 0.1 * t}, paused_at=9) for t in range(3)]
    got = promotions(ts, grid, top, 3)
    assert [g[1] for g in got] == [9, 3, 3, 1, 1, 1, 1]  # the highest rung's promotions first
    assert got[0] == (22, 9, 27) and got[1] == (10, 3, 9)


def test_equal_scores_at_a_rung_are_broken_by_a_seeded_draw_not_by_tid():
    grid, top = [1, 3], 9
    ts = [trial(t, {1: 0.5}, paused_at=1) for t in range(30)]  # 30 equal scores, 10 go on
    by_seed = {seed: sorted(t for t, _, _ in promotions(ts, grid, top, 3, seed))
               for seed in range(4)}
    assert all(len(v) == 10 for v in by_seed.values())
    assert by_seed[0] != list(range(10))  # not the lowest tids
    assert len({tuple(v) for v in by_seed.values()}) > 1  # the seed decides
    assert by_seed[1] == sorted(t for t, _, _ in promotions(ts, grid, top, 3, 1))  # reproducible


def test_the_end_of_a_search_takes_the_best_paused_trial_of_each_rung_highest_first():
    grid, top = [1, 3], 9
    ts = [trial(0, {1: 0.4}, paused_at=1), trial(1, {1: 0.6}, paused_at=1),
          trial(2, {1: 0.9, 3: 0.5}, paused_at=3), trial(3, {1: 0.8, 3: 0.7}, paused_at=3),
          trial(4, {1: 0.99})]  # finished (not paused): not a candidate
    assert best_paused(ts, grid, top) == [(3, 3, 9), (1, 1, 3)]
    assert best_paused([], grid, top) == []


def test_rung_scores_are_the_best_accuracy_up_to_each_rung_reached():
    curve = [{"epoch": e, "val_acc": v} for e, v in [(1, 0.2), (2, 0.5), (3, 0.4), (4, 0.45)]]
    assert rung_scores(curve, [1, 3, 9]) == {"1": 0.2, "3": 0.5}


def test_tpe_models_the_highest_rung_with_enough_scores():
    grid, top = [1, 3], 9
    ts = [trial(t, {1: 0.5}) for t in range(10)] + [trial(10 + t, {1: 0.5, 3: 0.6})
                                                     for t in range(4)]
    assert model_epoch(ts, grid, top, n_min=4) == 3
    assert model_epoch(ts, grid, top, n_min=5) == 1
    assert model_epoch(ts, grid, top, n_min=15) is None  # no rung has 15: random start-up
    assert model_epoch([], grid, top, n_min=3) is None


def test_a_trial_stopped_low_never_outranks_one_that_reached_the_top():
    low = trial(0, {1: 0.99})
    high = trial(1, {1: 0.5, 3: 0.6, 9: 0.7})
    assert search_rank(high, [1, 3], 9) > search_rank(low, [1, 3], 9)
