"""The provider's send rate: a token bucket (GCRA) shared through Redis, on Redis's own clock."""

import pytest

from scheduler import rate_limit


class StillClock:
    """time.monotonic and time.sleep for the in-process bucket: only sleeping moves time."""

    def __init__(self):
        self.now, self.naps = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def no_connection_yet(monkeypatch):
    """Each test connects to the REDIS_URL it sets, as a new worker process would."""
    monkeypatch.setattr(rate_limit, "_script", None)


@pytest.fixture
def still(monkeypatch):
    clock = StillClock()
    monkeypatch.setattr(rate_limit.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(rate_limit.time, "sleep", clock.sleep)
    monkeypatch.setattr(rate_limit, "_local", rate_limit.LocalBucket())
    return clock


def test_sends_are_spaced_evenly_not_bunched_at_each_seconds_start(settings, still):
    settings.REDIS_URL, settings.EMAIL_SEND_RATE_PER_SECOND, settings.EMAIL_SEND_BURST = "", 4, 1
    moments = []
    for _ in range(9):
        rate_limit.provider_rate_wait()
        moments.append(still.now - 1000.0)

    assert moments == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])


def test_a_burst_goes_at_once_after_a_quiet_spell_then_the_rate_holds(settings, still):
    settings.REDIS_URL, settings.EMAIL_SEND_RATE_PER_SECOND, settings.EMAIL_SEND_BURST = "", 2, 3
    moments = []
    for _ in range(5):
        rate_limit.provider_rate_wait()
        moments.append(still.now - 1000.0)

    assert moments == pytest.approx([0, 0, 0, 0.5, 1.0])


def test_no_limit_means_no_wait(settings, still):
    settings.EMAIL_SEND_RATE_PER_SECOND = 0
    for _ in range(100):
        rate_limit.provider_rate_wait()
    assert still.naps == []


@pytest.mark.redis
def test_every_worker_shares_one_bucket_on_redises_clock(settings, monkeypatch):
    import redis

    settings.REDIS_URL = settings.CACHES["default"].get("LOCATION") or "redis://127.0.0.1:6379/1"
    redis.Redis.from_url(settings.REDIS_URL).delete(rate_limit.KEY)

    # One send a second, two at once: two slots, then the third must wait about a second,
    # whichever process asks (the local clocks play no part: Redis's TIME decides).
    waits = [rate_limit.send_slot_wait_needed(1, 2) for _ in range(3)]
    monkeypatch.setattr(rate_limit, "_script", None)  # another machine: its own connection, the same key
    waits.append(rate_limit.send_slot_wait_needed(1, 2))

    assert waits[:2] == [0.0, 0.0]
    assert 0.9 < waits[2] <= 1.0 and 0.9 < waits[3] <= 1.0
    redis.Redis.from_url(settings.REDIS_URL).delete(rate_limit.KEY)


def test_redis_out_of_reach_falls_back_to_a_bucket_of_this_process(settings, still, caplog):
    from scheduler.tests.helpers import closed_port

    settings.REDIS_URL, settings.REDIS_SOCKET_TIMEOUT = f"redis://127.0.0.1:{closed_port()}/0", 1
    assert rate_limit.send_slot_wait_needed(10, 1) == 0.0
    assert rate_limit.send_slot_wait_needed(10, 1) == pytest.approx(0.1)
    assert "this process limits itself alone" in caplog.text
