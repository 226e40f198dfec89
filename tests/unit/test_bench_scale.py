"""The scale benchmark's measured window (services/bench/scale.steady_window): a pure function."""

from __future__ import annotations

import pytest

from services.bench.scale import Sample, cpu_breakdown, steady_window

pytestmark = pytest.mark.unit


def _sample(at: float, committed: int, members: int, stable: bool = True, cpu: float = 0.0) -> Sample:
    # Two cores, ``cpu`` of them busy until ``at``: the replicas use 1, the broker 0.25, the watcher 0.01.
    return Sample(at, committed, members, stable, cpu * at, 2.0 * at, 1.0 * at, 0.25 * at, 0.01 * at)


def test_the_window_starts_at_the_first_commit_after_the_group_settled_with_every_replica() -> None:
    samples = [
        _sample(0.0, 100, 0, stable=False),
        _sample(1.0, 100, 1),  # one replica alone: not yet
        _sample(2.0, 300, 2, stable=False),  # the second joins: rebalancing
        _sample(3.0, 300, 2),  # settled, but the batches read before are not committed yet
        _sample(4.0, 600, 2, cpu=1.5),  # the first commit after settling: the window opens here
        _sample(5.0, 900, 2, cpu=1.5),
        _sample(6.0, 1100, 2, cpu=1.5),  # done
        _sample(7.0, 1100, 2, cpu=1.5),
    ]
    window = steady_window(samples, end=1100, replicas=2)
    assert window.records == 500
    assert window.seconds == pytest.approx(2.0)
    assert window.rate == pytest.approx(250.0)
    assert window.busy == pytest.approx(0.75)
    assert window.replica_cores == pytest.approx(1.0)
    assert window.broker_cores == pytest.approx(0.25)
    assert window.own_cores == pytest.approx(0.01)
    assert cpu_breakdown(window, 2, broker_known=True) == (
        "busy 75% = replicas 1.00 + broker 0.25 + watcher 0.01 + other 0.24 cores"
    )
    assert cpu_breakdown(window, 2, broker_known=False) == (
        "busy 75% = replicas 1.00 + watcher 0.01 + broker and other 0.49 cores"
    )


def test_one_replica_settles_with_one_member() -> None:
    samples = [_sample(0.0, 0, 1), _sample(1.0, 50, 1), _sample(3.0, 250, 1)]
    assert steady_window(samples, end=250, replicas=1).rate == pytest.approx(100.0)


@pytest.mark.parametrize(
    "samples",
    [
        # The group never had both replicas at once.
        [_sample(0.0, 0, 1), _sample(1.0, 500, 1), _sample(2.0, 1000, 1)],
        # It settled, but the next commit was the last one: nothing left to measure.
        [_sample(0.0, 0, 2, stable=False), _sample(1.0, 500, 2), _sample(2.0, 1000, 2)],
        # It never finished.
        [_sample(0.0, 0, 2), _sample(1.0, 500, 2), _sample(2.0, 900, 2)],
    ],
)
def test_no_window_is_an_error_not_a_figure(samples: list[Sample]) -> None:
    with pytest.raises(ValueError):
        steady_window(samples, end=1000, replicas=2)
