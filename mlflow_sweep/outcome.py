"""How a trial ended, decided from what is known once it is over (pure: values in, a value out).

The agent knows four things about a trial that has ended: its exit code, the watch thread's
verdict (the sweep was cancelled, hyperband cut the trial, or nothing), the signal the agent got,
and whether the trial ended because it was asked to (``runners.StopRequest.obeyed``). ``outcome``
turns them into the trial's state, whether its point is requeued, and the tags that say why.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Mapping, Union

from mlflow_sweep.tracker import KILLED_BY_TAG, STOP_ASKED_TAG, STOPPED_EARLY_TAG
from mlflow_sweep.trials import TrialState


@dataclass(frozen=True)
class Cancelled:
    """The watch thread's verdict: the sweep was cancelled while the trial ran."""


@dataclass(frozen=True)
class CutAt:
    """The watch thread's verdict: hyperband put the trial below the cut at this iteration."""

    band: int


Verdict = Union[Cancelled, CutAt, None]


@dataclass(frozen=True)
class Outcome:
    """How a trial ended: its state, why its point is requeued (or None), the tags that say why."""

    state: TrialState
    requeue: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    stopped_at: int | None = None
    """The hyperband iteration that stopped the trial."""


def outcome(code: int, verdict: Verdict, signum: int | None, obeyed: bool) -> Outcome:
    """How a trial ended, from its exit code, the watch thread's verdict, the agent's signal and
    whether the trial ended because it was asked to.

    A trial that ended on its own is what its exit code says, even if a stop was asked meanwhile: a
    function that never calls ``should_stop()`` runs to its end, and finished is the honest word for
    that (the tag ``sweep.stop_asked`` says who asked). One that obeyed ends KILLED: a cancel and a
    hyperband cut are final; an interrupted agent's trial is requeued (it does not count, and another
    agent runs its point again). A cancel outranks a signal that came with it.

    >>> outcome(0, CutAt(3), None, obeyed=False).state.value
    'FINISHED'
    >>> outcome(-15, CutAt(3), None, obeyed=True).stopped_at
    3

    Args:
        code: the runner's exit code (0: success).
        verdict: ``Cancelled()``, ``CutAt(band)`` or None.
        signum: the signal the agent got (a function trial's KeyboardInterrupt counts as SIGINT), or None.
        obeyed: the trial ended because it was asked to.
    """
    own = TrialState.FINISHED if code == 0 else TrialState.FAILED
    if not obeyed:
        asked = _who_asked(verdict, signum)
        return Outcome(own, tags={} if asked is None else {STOP_ASKED_TAG: asked})
    if isinstance(verdict, Cancelled):
        return Outcome(TrialState.KILLED, tags={KILLED_BY_TAG: "cancel"})
    if signum is not None:
        return Outcome(TrialState.KILLED, "interrupted", {KILLED_BY_TAG: signal.Signals(signum).name})
    if isinstance(verdict, CutAt):
        return Outcome(TrialState.KILLED, tags={STOPPED_EARLY_TAG: str(verdict.band)}, stopped_at=verdict.band)
    return Outcome(own)  # obeyed, but nobody asked: cannot happen; the code is the best word left


def _who_asked(verdict: Verdict, signum: int | None) -> str | None:
    if isinstance(verdict, Cancelled):
        return "cancel"
    if isinstance(verdict, CutAt):
        return f"hyperband at iteration {verdict.band}"
    return None if signum is None else signal.Signals(signum).name
