"""The checkpointed state shared by the peers that sample in rounds and keep nothing else between
steps: the index of the current generation round (mid-step state, so that a checkpoint taken between
two rounds resumes at the right one)."""

from __future__ import annotations

from typing import Any


class RoundCounterState:
    """Mixin for a :class:`~bandits.controllers.base.Controller` whose extra state is ``self.round``."""

    round: int

    def _extra_state(self) -> dict:
        return {"round": self.round}

    def _read_extra_state(self, reader: Any) -> dict:
        return {"round": reader.int("round", lo=0)}

    def _commit_extra_state(self, extra: dict) -> None:
        self.round = extra["round"]
