from trials.pruning import MedianPruner, NopPruner, make_pruner


def curve(*accs):
    return [{"epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)]


def test_median_rule():
    p = MedianPruner(warmup=1, min_trials=3)
    others = [curve(0.5, 0.6, 0.7), curve(0.4, 0.5, 0.8), curve(0.2, 0.3, 0.9)]
    assert not p.should_prune(1, curve(0.0), others)  # warm-up
    assert p.should_prune(2, curve(0.1, 0.2), others)  # 0.2 < median(0.6, 0.5, 0.3) = 0.5
    assert not p.should_prune(2, curve(0.1, 0.55), others)
    assert not p.should_prune(2, curve(0.1, 0.2), others[:2])  # too few to compare with
    # only trials that reached the epoch count
    assert not p.should_prune(4, curve(0.1, 0.1, 0.1, 0.1), others)


def test_make_pruner():
    assert isinstance(make_pruner(None), NopPruner)
    assert isinstance(make_pruner({"rule": "off"}), NopPruner)
    assert isinstance(make_pruner({"rule": "median", "warmup": 2}), MedianPruner)
