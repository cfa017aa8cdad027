"""A long-lived kernel stays bounded: ended jobs and dead letters are kept up to a limit (the
oldest dropped, counted and warned about once); an idle source backs off instead of spinning."""

from __future__ import annotations

import logging
import threading

import pytest
from support import WAIT

from sage_nb import LocalEnvironment


def test_ended_jobs_beyond_keep_jobs_are_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    with LocalEnvironment("keep", keep_jobs=2) as env:
        env.from_batch([1]).sink(lambda x: None)
        with caplog.at_level(logging.WARNING, logger="sage_nb"):
            jobs = [env.submit() for _ in range(5)]
        assert [j.status for j in jobs] == ["finished"] * 5
        # Ended jobs are forgotten when a new one is created: the two newest ended ones stay
        # with it (the last, which has ended since).
        assert env.jobs == jobs[-3:]
        assert env._job_manager.dropped == 2
        warnings = [r for r in caplog.records if "keep_jobs" in r.getMessage()]
        assert len(warnings) == 1


def test_running_jobs_are_never_forgotten() -> None:
    gate = threading.Event()
    with LocalEnvironment("keep0", keep_jobs=0) as env:
        env.from_batch([1]).map(lambda x: gate.wait(WAIT)).sink(lambda x: None)
        job = env.submit(autostop=False)
        assert env.jobs == [job]
        gate.set()
        assert job.wait(WAIT)


def test_dead_letters_keep_the_newest(caplog: pytest.LogCaptureFixture) -> None:
    def fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    with LocalEnvironment("letters", keep_dead_letters=3) as env:
        env.from_batch(range(10)).map(fail, on_error="dead_letter").sink(lambda x: None)
        with caplog.at_level(logging.WARNING, logger="sage_nb"):
            job = env.submit()
        assert [d.record for d in job.dead_letters] == [7, 8, 9]
        assert len(job.dead_letters) == 3
        assert job.dead_letters_dropped == 7
        assert job.dead_letters[-1].record == 9
        assert "+7 dropped" in repr(job.dead_letters)
        warnings = [r for r in caplog.records if "keep_dead_letters" in r.getMessage()]
        assert len(warnings) == 1


def test_unlimited_retention_keeps_everything() -> None:
    def fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    with LocalEnvironment("all", keep_jobs=None, keep_dead_letters=None) as env:
        env.from_batch(range(50)).map(fail, on_error="dead_letter").sink(lambda x: None)
        jobs = [env.submit() for _ in range(3)]
        assert env.jobs == jobs
        assert len(jobs[-1].dead_letters) == 50
        assert jobs[-1].dead_letters_dropped == 0


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("keep_jobs", -1, ValueError),
        ("keep_dead_letters", 1.5, TypeError),
        ("keep_jobs", True, TypeError),
    ],
)
def test_bad_retention_limits_say_what_is_expected(option: str, value: object, error: type) -> None:
    with pytest.raises(error, match=option):
        LocalEnvironment("bad", **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [None, 0.0])
def test_an_idle_source_backs_off_instead_of_spinning(delay: float | None) -> None:
    calls = 0
    stop = threading.Event()

    def idle() -> None:
        nonlocal calls
        calls += 1
        return None

    with LocalEnvironment("idle") as env:
        env.from_source(idle, delay=delay).sink(lambda x: None)
        job = env.submit(autostop=False)
        stop.wait(0.3)
        job.stop(WAIT)
    # Spinning calls it hundreds of thousands of times in 0.3 s; backing off up to 50 ms
    # calls it a few dozen times (a generous bound for a loaded machine).
    assert 1 <= calls < 300


def test_a_source_that_is_sometimes_idle_delivers_every_record() -> None:
    values = iter([None, 1, None, None, 2, 3, None])
    out: list[int] = []
    done = threading.Event()

    def source() -> int | None:
        value = next(values, None)
        if value is None and not out:
            return None
        return value

    def sink(x: int) -> None:
        out.append(x)
        if x == 3:
            done.set()

    with LocalEnvironment("sometimes") as env:
        env.from_source(source).sink(sink)
        job = env.submit(autostop=False)
        assert done.wait(WAIT)
        job.stop(WAIT)
    assert out == [1, 2, 3]
