"""The demo's past, for `make run` (`load_demo --with-history`): a running round that has lived.

The demo's first round started two weeks ago with nobody in it, so the admin and its dashboard
would show nothing. This gives it, once, DEMO_LEARNERS learners confirmed before it started (an
organizer's import, as confirmed), its study groups, and every email that fell due since, sent at
the moment the scheduler would have sent it (a pass every PASS_EVERY, `deliveries_dispatch` and
`deliveries_send` at that moment) to the development outbox; after each pass, the provider's
simulated events up to the next (scheduler/simulation.py), so a hard bounce stops later weeks
as it would. From then on the running site (beat) sends what falls due, and `simulate_events`
reports on it.
"""

import contextlib
import datetime
import random
from dataclasses import dataclass

from cohorts.models import Cohort
from scheduler.planning import deliveries_dispatch
from scheduler.sending import deliveries_send
from scheduler.simulation import SimulationRefused, simulation_allowed, tracking_events_simulate
from signups.groups import GroupsExist, NoLearnersToGroup, cohort_groups_form
from signups.imports import learners_import
from signups.selectors import cohort_seats_taken

DEMO_LEARNERS = 60
PASS_EVERY = datetime.timedelta(hours=12)
SEED = 14  # who the learners are and how they are grouped
_FIRST_NAMES = ["Ada", "Grace", "Alan", "Katherine", "Hedy", "Linus", "Margaret", "Edsger", "Barbara", "Guido", "Radia", "Tim"]
_TIME_ZONES = ["Europe/Lisbon", "Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Asia/Kolkata", "Asia/Tokyo", "Africa/Lagos"]
_EXPERIENCE = ["none", "some", "experienced"]


@dataclass
class DemoHistory:
    learners: int = 0
    emails: int = 0
    events: int = 0


def _learners_csv(count: int) -> str:
    draw = random.Random(SEED)
    lines = ["email,first_name,timezone,experience,wants_group"]
    for number in range(1, count + 1):
        lines.append(
            f"demo-learner-{number:03d}@example.org,{draw.choice(_FIRST_NAMES)},{draw.choice(_TIME_ZONES)},"
            f"{draw.choice(_EXPERIENCE)},{'no' if draw.random() < 0.1 else 'yes'}"
        )
    return "\n".join(lines) + "\n"


def demo_history_make(cohort: Cohort, now: datetime.datetime, learners: int | None = None) -> DemoHistory | None:
    """Give the round its past, up to `now`, once: None (nothing done) when it has learners already.
    Development only: raises SimulationRefused unless the site sends to the outbox (it sends
    real emails to made-up addresses). Not one transaction: a run stopped half-way leaves
    learners, and a second run then keeps the round as it is."""
    if not simulation_allowed():
        raise SimulationRefused("the demo's history is sent to the development outbox only")
    if cohort_seats_taken(cohort, now):
        return None
    confirmed_at = datetime.datetime.combine(cohort.start_date - datetime.timedelta(days=10), datetime.time(12), tzinfo=datetime.UTC)
    if confirmed_at >= now:
        return None
    history = DemoHistory()
    history.learners = learners_import(cohort, _learners_csv(learners or DEMO_LEARNERS), confirmed=True, now=confirmed_at).added
    grouped_at, grouped = confirmed_at + datetime.timedelta(days=7), False
    moment = confirmed_at + datetime.timedelta(hours=1)
    simulated_to = None
    while moment < now:
        if not grouped and moment >= grouped_at:
            with contextlib.suppress(GroupsExist, NoLearnersToGroup):
                cohort_groups_form(cohort, now=grouped_at, seed=SEED)
            grouped = True
        for chunk in deliveries_dispatch(moment).chunks:
            history.emails += deliveries_send(chunk, now=moment).sent
        next_moment = min(moment + PASS_EVERY, now)
        # The default seed, as `simulate_events` runs with: it then finds these events stored already.
        history.events += tracking_events_simulate(next_moment, [cohort.pk], since=simulated_to).stored
        simulated_to = next_moment
        moment += PASS_EVERY
    return history
