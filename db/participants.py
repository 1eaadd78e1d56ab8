"""Participant ids, as this server mints them: who is behind a room's participant.

`terminal:<id>` is a paired TV, `account:<id>` a staff account (a secretary's phone, a
supervisor); any other id comes from a token made outside the database (`lighthouse
token`, a configured room) and names nobody here.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINAL = "terminal"
ACCOUNT = "account"


def terminal_participant(terminal_id: int) -> str:
    return f"{TERMINAL}:{terminal_id}"


def account_participant(account_id: int) -> str:
    return f"{ACCOUNT}:{account_id}"


@dataclass(frozen=True, slots=True)
class ParticipantId:
    kind: str  # terminal | account | "" (not one of ours)
    number: int | None

    @classmethod
    def parse(cls, participant_id: str) -> ParticipantId:
        kind, _, ident = participant_id.partition(":")
        if kind in (TERMINAL, ACCOUNT) and ident.isdigit():
            return cls(kind, int(ident))
        return cls("", None)

    @property
    def terminal_id(self) -> int | None:
        return self.number if self.kind == TERMINAL else None

    @property
    def account_id(self) -> int | None:
        return self.number if self.kind == ACCOUNT else None
