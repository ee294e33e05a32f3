"""The gate's p99 comparison on given latencies: each version's best round decides, so one noisy
round does not refuse a version, while a version slower in every round is refused by name."""

from scripts.rollout.gate import Gate, compare_p99

FAST = [10.0] * 99 + [12.0]
NOISY = [10.0] * 98 + [500.0, 500.0]
SLOW = [40.0] * 100


def test_one_noisy_round_does_not_decide():
    gate = Gate()
    compare_p99({"serving": [FAST, FAST, FAST], "candidate": [NOISY, FAST, NOISY]}, 2.0, gate)
    assert gate.passed, gate.problems
    assert gate.figures["p99_ms"]["candidate"] < 12.1


def test_a_version_slower_in_every_round_is_refused_with_both_figures():
    gate = Gate()
    compare_p99({"serving": [FAST, NOISY, FAST], "candidate": [SLOW, SLOW, NOISY]}, 2.0, gate)
    assert gate.problems == [
        "p99 under load 40.00 ms vs the serving version's 10.02 ms (rollout.max_p99_factor 2)"
    ]
