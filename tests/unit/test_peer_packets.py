"""What one engine's NOTIFY carries to the others (adapters/postgres/peer_packets.py): everything queued,
in as few payloads as fit under PostgreSQL's 8000 bytes, events in order, big ones light."""

from __future__ import annotations

from adapters.postgres.peer_packets import PAYLOAD_LIMIT, CancelAnswer, CancelAsk, Outbox, decode, item, pack
from application.events import Event
from domain.job import ErrorInfo, Progress

SENDER = "0f3c2a56-6c1b-4d2e-9a53-6a8f4f1b2c3d"


def job_event(index: int, **changes: object) -> Event:
    fields: dict[str, object] = {"kind": "job", "id": f"job-{index}", "state": "PENDING", "at": 1000.0 + index}
    fields.update(task="bench.noop", **changes)
    return Event(**fields)  # type: ignore[arg-type]


def unpacked(payloads: list[str]) -> list[tuple[str, Event]]:
    return [item(raw) for payload in payloads for raw in decode(payload).events]


def test_a_burst_goes_in_few_payloads_each_under_the_limit_in_order() -> None:
    events = [job_event(i, result={"n": i, "text": "é" * 20}) for i in range(2000)]
    payloads = pack(SENDER, due=True, events=events)
    assert all(len(payload.encode()) <= PAYLOAD_LIMIT for payload in payloads)  # bytes, not characters
    assert len(payloads) <= len(events) // 20
    assert unpacked(payloads) == [("e", event) for event in events]
    assert [decode(payload).due for payload in payloads] == [True] + [False] * (len(payloads) - 1)
    assert {decode(payload).sender for payload in payloads} == {SENDER}


def test_an_event_too_big_for_a_payload_goes_light() -> None:
    big = job_event(1, state="SUCCESS", result="x" * 10_000, started_at=999.0, attempts=1)
    failed = job_event(2, state="FAILURE", error=ErrorInfo(type="ValueError", message="m", traceback="t" * 9000))
    progress = job_event(3, state="PROGRESS", progress=Progress(state="PROGRESS", meta={"blob": "y" * 9000}))
    small = job_event(4, state="SUCCESS", result=4)
    received = unpacked(pack(SENDER, events=[big, failed, progress, small]))
    assert [whole for whole, _ in received] == ["r", "r", "r", "e"]
    light_big, light_failed, light_progress, whole_small = (event for _, event in received)
    assert light_big.result is None and (light_big.id, light_big.state, light_big.attempts) == ("job-1", "SUCCESS", 1)
    assert light_big.started_at == 999.0 and light_big.terminal
    assert light_failed.error is None and light_failed.state == "FAILURE"
    assert light_progress.progress == Progress(state="PROGRESS") and not light_progress.terminal
    assert whole_small == small


def test_cancel_requests_and_answers_travel_with_the_events() -> None:
    ask = CancelAsk(to="owner-1", job="job-9", ask=7)
    answer = CancelAnswer(to="asker-2", ask=3, done=True)
    payloads = pack(SENDER, events=[job_event(1)], asks=[ask], answers=[answer])
    assert len(payloads) == 1
    packet = decode(payloads[0])
    assert packet.asks == [ask] and packet.answers == [answer] and not packet.due


def test_nothing_to_say_sends_nothing_and_the_outbox_empties() -> None:
    outbox = Outbox(SENDER, max_events=3)
    assert outbox.take() == []
    for index in range(5):
        outbox.add_event(job_event(index))
    outbox.due = True
    assert outbox.dropped == 2  # the oldest went: the sender was behind
    payloads = outbox.take()
    assert [event.id for _, event in unpacked(payloads)] == ["job-2", "job-3", "job-4"]
    assert decode(payloads[0]).due
    assert outbox.take() == []


def test_a_heartbeat_is_one_empty_packet_and_hello_and_bye_say_so() -> None:
    (beat,) = pack(SENDER, beat=True)
    packet = decode(beat)
    assert packet.sender == SENDER and not (packet.due or packet.hello or packet.bye or packet.events)
    assert decode(pack(SENDER, hello=True)[0]).hello
    assert decode(pack(SENDER, bye=True)[0]).bye
    assert pack(SENDER) == []


def test_presence_rides_on_the_first_packet_of_a_burst_and_the_outbox_forgets_it() -> None:
    outbox = Outbox(SENDER)
    outbox.hello = outbox.beat = True
    for index in range(300):
        outbox.add_event(job_event(index, result="x" * 100))
    payloads = outbox.take()
    assert len(payloads) > 1
    assert decode(payloads[0]).hello and not any(decode(payload).hello for payload in payloads[1:])
    assert outbox.take() == []
    outbox.bye = True
    (bye,) = outbox.take()
    assert decode(bye).bye and decode(bye).sender == SENDER


def test_only_what_ends_something_or_asks_is_urgent_and_taking_forgets_it() -> None:
    outbox = Outbox(SENDER)
    outbox.add_event(job_event(1, state="STARTED"))
    outbox.add_event(job_event(1, state="PROGRESS", progress=Progress(state="PROGRESS", meta={"done": 1})))
    outbox.beat = True
    assert not outbox.urgent, "a start, progress and a heartbeat can wait"
    outbox.add_event(job_event(1, state="SUCCESS", result=1))
    assert outbox.urgent
    assert [event.state for _, event in unpacked(outbox.take())] == ["STARTED", "PROGRESS", "SUCCESS"]
    assert not outbox.urgent
    for make_urgent in (
        lambda box: setattr(box, "due", True),
        lambda box: setattr(box, "hello", True),
        lambda box: setattr(box, "bye", True),
        lambda box: box.asks.append(CancelAsk(to="other", job="job-1", ask=1)),
        lambda box: box.answers.append(CancelAnswer(to="other", ask=1, done=True)),
        lambda box: box.add_event(Event(kind="workflow", id="wf", state="FAILURE", at=1.0)),
    ):
        outbox = Outbox(SENDER)
        make_urgent(outbox)
        assert outbox.urgent
