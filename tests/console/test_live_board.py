"""The live board's state and its change stream (issue 13 §1), on a fake clock: operator
state derived from calls, today's calls, the ring buffer's replay and its snapshot fallback,
and that one business's changes never show on another's board."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mediasrv.outputs.calllog import CallRecord, Disposition
from mediasrv.outputs.live_board import (
    CallDerivedStates,
    LiveBoard,
    OperatorState,
    RosterEntry,
    softphone_reachable,
)

NOON_JST = 1_764_644_400.0  # 2025-12-02 12:00 Asia/Tokyo
SATO = RosterEntry("sato", "sip:sato@127.0.0.1:5070", "佐藤", wrap_up=5.0)
KATO = RosterEntry("kato", "sip:kato@127.0.0.1:5071", "加藤")


class FakeClock:
    def __init__(self, now: float = NOON_JST) -> None:
        self.now = now
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.timers.append((self.now + delay, callback))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, callback in due:
            callback()


def record(call_id: str, business: str = "acme", **kw: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": call_id,
        "inbound_call_id": f"sip-{call_id}",
        "tracking_number": "+81312345678",
        "caller_number": "+819012345678",
        "business": business,
        "medium": "新聞",
        "start_time": NOON_JST,
        "disposition": Disposition.IN_PROGRESS,
    }
    fields.update(kw)
    return CallRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def board(clock: FakeClock) -> LiveBoard:
    b = LiveBoard(clock, clock.call_later)
    b.set_roster("acme", [SATO, KATO])
    return b


def operators(board: LiveBoard, business: str = "acme") -> dict[str, dict[str, object]]:
    data = board.snapshot(business).data
    return {str(op["name"]): op for op in data["operators"]}  # type: ignore[attr-defined]


def calls(board: LiveBoard, business: str = "acme") -> dict[str, dict[str, object]]:
    return {str(c["call_id"]): c for c in board.snapshot(business).data["calls"]}  # type: ignore[attr-defined]


def test_a_call_rings_is_answered_and_ends(board: LiveBoard, clock: FakeClock) -> None:
    board.call_ringing(record("c1"), ["sip:sato@127.0.0.1:5070;transport=udp", KATO.target])
    assert calls(board)["c1"]["state"] == "ringing"
    assert calls(board)["c1"]["ringing"] == ["sato", "kato"]
    assert {n: o["state"] for n, o in operators(board).items()} == {
        "sato": "ringing",
        "kato": "ringing",
    }

    clock.advance(3)
    answered = record("c1", answer_time=clock.now, operator_uri="sip:sato@127.0.0.1:5070")
    board.call_answered(answered)
    call = calls(board)["c1"]
    assert (call["state"], call["operator"], call["answered"]) == ("answered", "sato", clock.now)
    ops = operators(board)
    assert (ops["sato"]["state"], ops["sato"]["call_id"]) == ("on_call", "c1")
    assert (ops["kato"]["state"], ops["kato"]["call_id"]) == ("idle", None)

    clock.advance(30)
    done = record(
        "c1",
        answer_time=clock.now - 30,
        end_time=clock.now,
        talk_seconds=30.0,
        operator_uri="sip:sato@127.0.0.1:5070",
        disposition=Disposition.ANSWERED,
    )
    board.call_ended(done)
    assert calls(board) == {}
    sato = operators(board)["sato"]
    assert sato["state"] == "wrap_up"  # her wrap_up is 5 s
    assert sato["today"] == {
        "count": 1,
        "talk_seconds": 30.0,
        "calls": [
            {
                "call_id": "c1",
                "caller_number": "+819012345678",
                "tracking_number": "+81312345678",
                "medium": "新聞",
                "answered": clock.now - 30,
                "talk_seconds": 30.0,
            }
        ],
    }
    before = board.last_id("acme")
    clock.advance(5)
    assert operators(board)["sato"]["state"] == "idle"
    # the end of the wrap-up is pushed too, not only seen on the next snapshot
    pushed = board.since("acme", before)
    assert pushed is not None and pushed[-1].kind == "operator"
    assert pushed[-1].data["operator"]["state"] == "idle"  # type: ignore[index]


def test_unanswered_call_leaves_no_today_entry(board: LiveBoard) -> None:
    board.call_ringing(record("c2"), [KATO.target])
    board.call_ended(record("c2", disposition=Disposition.NO_ANSWER, end_time=NOON_JST + 20))
    assert calls(board) == {}
    assert operators(board)["kato"]["state"] == "idle"
    assert operators(board)["kato"]["today"]["count"] == 0  # type: ignore[index]


def test_an_operator_not_in_the_roster_shows_as_seen(board: LiveBoard) -> None:
    board.call_ringing(record("c3"), ["sip:temp@127.0.0.1:5099"])
    board.call_answered(record("c3", answer_time=NOON_JST + 1, operator_uri="sip:temp@127.0.0.1:5099"))
    temp = operators(board)["sip:temp@127.0.0.1:5099"]
    assert (temp["state"], temp["listed"], temp["display_name"]) == ("on_call", False, "temp")


def test_replay_after_an_id_and_snapshot_when_too_old(clock: FakeClock) -> None:
    board = LiveBoard(clock, clock.call_later, ring_events=4)
    board.set_roster("acme", [KATO])  # event 1
    first = board.last_id("acme")
    board.call_ringing(record("c1"), [KATO.target])  # events 2 (call), 3 (operator)
    replay = board.since("acme", first)
    assert replay is not None and [e.kind for e in replay] == ["call", "operator"]
    assert board.since("acme", board.last_id("acme")) == []
    for n in range(4):  # push events 2 and 3 out of the 4-event buffer
        board.call_ringing(record(f"x{n}"), [])
    assert board.since("acme", first) is None  # too old: the client needs a snapshot
    assert board.since("acme", None) is None
    assert board.since("acme", "deadbeef-1") is None  # another run of the server
    assert board.since("acme", f"{first.split('-')[0]}-999") is None  # from the future
    assert board.since("acme", "garbage") is None


def test_businesses_are_apart(board: LiveBoard) -> None:
    board.set_roster("other", [RosterEntry("x", "sip:x@127.0.0.1:5080")])
    mark = board.last_id("other")
    board.call_ringing(record("c1"), [SATO.target])
    assert calls(board, "other") == {}
    assert board.since("other", mark) == []
    assert "c1" in calls(board)


def test_today_rolls_over_at_local_midnight(board: LiveBoard, clock: FakeClock) -> None:
    board.call_ringing(record("c1"), [KATO.target])
    board.call_answered(record("c1", answer_time=NOON_JST, operator_uri=KATO.target))
    board.call_ended(record("c1", answer_time=NOON_JST, talk_seconds=9.0, operator_uri=KATO.target,
                            disposition=Disposition.ANSWERED))
    assert operators(board)["kato"]["today"]["count"] == 1  # type: ignore[index]
    clock.advance(12 * 3600)  # 00:00 in Tokyo
    assert operators(board)["kato"]["today"]["count"] == 0  # type: ignore[index]


def test_seed_today_keeps_counts_across_a_restart(clock: FakeClock) -> None:
    board = LiveBoard(clock)
    board.set_roster("acme", [KATO])
    yesterday = NOON_JST - 86400
    board.seed_today(
        [
            record("a", answer_time=NOON_JST - 60, talk_seconds=20.0, operator_uri=KATO.target,
                   disposition=Disposition.ANSWERED),
            record("b", answer_time=yesterday, operator_uri=KATO.target,
                   disposition=Disposition.ANSWERED),
            record("c", disposition=Disposition.NO_ANSWER),
        ]
    )
    today = operators(board)["kato"]["today"]
    assert (today["count"], today["talk_seconds"]) == (1, 20.0)  # type: ignore[index]


def test_softphone_without_registration_is_offline() -> None:
    registered = {"desk1"}
    states = CallDerivedStates(softphone_reachable(lambda aor: [1] if aor in registered else []))
    desk1 = RosterEntry("desk", "desk1", kind="softphone")
    desk2 = RosterEntry("desk2", "desk2", kind="softphone")
    assert states.state("acme", desk1, 0.0) is OperatorState.IDLE
    assert states.state("acme", desk2, 0.0) is OperatorState.OFFLINE
    assert states.state("acme", KATO, 0.0) is OperatorState.IDLE


def queue(board: LiveBoard, business: str = "acme") -> list[dict[str, object]]:
    return board.snapshot(business).data["queue"]  # type: ignore[return-value]


def test_the_queue_shows_positions_and_waiting_since(board: LiveBoard, clock: FakeClock) -> None:
    """Issue 10 §6 "queued with position" on the board: each waiting caller with its queue,
    position and since when; a move keeps the since; out on answer, overflow or hang-up."""
    assert board.snapshot("acme").data["queue_available"] is True
    assert queue(board) == []
    board.call_ringing(record("q1", caller_display="山田"))
    board.call_ringing(record("q2", caller_number="+81612345678"))
    mark = board.last_id("acme")
    board.call_queued("acme", "q1", "sales", 1, clock.now)
    clock.advance(4)
    board.call_queued("acme", "q2", "sales", 2, clock.now)
    assert [(e["call_id"], e["position"], e["since"]) for e in queue(board)] == [
        ("q1", 1, NOON_JST),
        ("q2", 2, NOON_JST + 4),
    ]
    first = queue(board)[0]
    assert (first["queue"], first["caller_display"], first["caller_number"]) == (
        "sales", "山田", "+819012345678",
    )  # fmt: skip
    assert (first["tracking_number"], first["medium"]) == ("+81312345678", "新聞")
    pushed = board.since("acme", mark)
    assert pushed is not None and [e.kind for e in pushed] == ["queue", "queue"]
    assert [e["call_id"] for e in pushed[-1].data["queue"]] == ["q1", "q2"]  # type: ignore[union-attr]

    clock.advance(6)
    board.call_unqueued("acme", "q1")  # an operator took q1
    board.call_queued("acme", "q2", "sales", 1, clock.now)  # q2 moves up, keeps its since
    assert [(e["call_id"], e["position"], e["since"]) for e in queue(board)] == [
        ("q2", 1, NOON_JST + 4),
    ]
    same = board.last_id("acme")
    board.call_queued("acme", "q2", "sales", 1, clock.now)  # no change: nothing pushed
    board.call_unqueued("acme", "q1")  # already out: nothing pushed
    assert board.since("acme", same) == []
    board.call_ended(record("q2", end_time=clock.now, disposition=Disposition.ABANDONED))
    assert queue(board) == []
    gone = board.since("acme", same)
    assert gone is not None and [e.kind for e in gone] == ["queue", "call_gone"]
    assert gone[0].data == {"queue": []}


def test_a_queued_call_of_one_business_is_not_on_anothers_board(board: LiveBoard) -> None:
    board.call_ringing(record("q9", business="other"))
    board.call_queued("other", "q9", "main", 1, NOON_JST)
    assert queue(board) == [] and [e["call_id"] for e in queue(board, "other")] == ["q9"]


def test_an_operator_rung_by_the_flow_shows_ringing(board: LiveBoard) -> None:
    board.call_ringing(record("r1"))  # the flow has not rung anyone yet (an IVR first)
    assert calls(board)["r1"]["ringing"] == [] and operators(board)["kato"]["state"] == "idle"
    board.operator_ringing("acme", "r1", KATO.target)
    board.operator_ringing("acme", "r1", KATO.target)  # once
    board.operator_ringing("acme", "r1", "sip:stranger@192.0.2.9")  # not listed: not shown
    assert calls(board)["r1"]["ringing"] == ["kato"]
    assert operators(board)["kato"]["state"] == "ringing"


def test_the_queue_can_be_reported_unavailable(clock: FakeClock) -> None:
    board = LiveBoard(clock, clock.call_later, queue_available=False)
    data = board.snapshot("acme").data
    assert data["queue"] == [] and data["queue_available"] is False


def test_a_call_whose_task_failed_is_dropped(board: LiveBoard) -> None:
    board.call_ringing(record("c9"), [KATO.target])
    board.drop_call("acme", "c9")
    assert calls(board) == {} and operators(board)["kato"]["state"] == "idle"
    mark = board.last_id("acme")
    board.drop_call("acme", "c9")  # already gone: nothing happens
    board.drop_call("nobody", "c9")
    assert board.since("acme", mark) == []


def test_roster_changes_are_pushed(board: LiveBoard) -> None:
    mark = board.last_id("acme")
    board.set_roster("acme", [SATO, KATO])  # unchanged: no event
    assert board.since("acme", mark) == []
    renamed = RosterEntry("kato", KATO.target, "加藤 (受付)")
    board.set_roster("acme", [renamed])
    events = board.since("acme", mark)
    assert events is not None
    assert [(e.kind, e.data.get("name")) for e in events if e.kind == "operator_gone"] == [
        ("operator_gone", "sato")
    ]
    changed = [e.data["operator"] for e in events if e.kind == "operator"]
    assert changed == [operators(board)["kato"]] and operators(board)["kato"]["display_name"] == "加藤 (受付)"
