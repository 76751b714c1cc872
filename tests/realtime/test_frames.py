"""Frames and their two encodings (realtime/frames.py), and client-frame decoding."""

from __future__ import annotations

import json

import pytest

from realtime import frames
from realtime.frames import CloseCode

NOTIFICATION = {
    "id": "1187",
    "type": "order.shipped",
    "title": "line one\nline two",  # a newline must not end the SSE data line
    "body": "",
    "data": {"order_id": 1234},
    "source": "shop",
    "created_at": "2026-11-23T20:01:02.123456Z",
    "read_at": None,
}


def parse_event(raw: bytes) -> dict[str, str]:
    assert raw.endswith(b"\n\n")
    fields: dict[str, str] = {}
    for line in raw[:-2].decode().split("\n"):
        name, _, value = line.partition(": ")
        assert name not in fields, f"repeated field {name!r}: data must be one line"
        fields[name] = value
    return fields


def test_a_notification_is_one_event_with_its_id_and_one_data_line() -> None:
    event = parse_event(frames.sse_event(frames.notification(NOTIFICATION)))
    assert event["id"] == "1187"
    assert event["event"] == "notification"
    assert json.loads(event["data"]) == NOTIFICATION


def test_other_frames_are_events_named_by_type_without_it() -> None:
    ready: frames.ReadyFrame = {
        "type": "ready",
        "user": "42",
        "replayed": 1,
        "complete": True,
        "unread": 3,
        "last_id": "9",
    }
    event = parse_event(frames.sse_event(ready))
    assert event == {"event": "ready", "data": event["data"]}
    assert json.loads(event["data"]) == {k: v for k, v in ready.items() if k != "type"}
    read = parse_event(frames.sse_event(frames.read(["1", "2"])))
    assert (read["event"], json.loads(read["data"])) == ("read", {"ids": ["1", "2"]})
    assert frames.sse_event(frames.KEEPALIVE) == b": ping\n\n"


@pytest.mark.parametrize("code", list(CloseCode))
def test_close_event_carries_code_and_detail(code: CloseCode) -> None:
    event = parse_event(frames.sse_close(code, retry_ms=1234))
    assert event["retry"] == "1234"
    assert event["event"] == "close"
    body = json.loads(event["data"])
    assert body["code"] == int(code) and body["detail"]


def test_websocket_text_is_the_frame_itself() -> None:
    frame = frames.notification(NOTIFICATION)
    assert json.loads(frames.ws_text(frame)) == frame
    assert json.loads(frames.ws_text(frames.PONG)) == {"type": "pong"}


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ('{"type": "ping"}', {"type": "ping"}),
        ('{"type": "read", "ids": ["1", "22"]}', {"type": "read", "ids": ["1", "22"]}),
        ("not json", {"type": "error", "code": "invalid_json"}),
        ("[1]", {"type": "error", "code": "invalid_frame"}),
        ('{"type": 3}', {"type": "error", "code": "invalid_frame"}),
        ('{"type": "read", "ids": []}', {"type": "error", "code": "invalid_read"}),
        ('{"type": "read", "ids": [1]}', {"type": "error", "code": "invalid_read"}),
        ('{"type": "read", "ids": ["²"]}', {"type": "error", "code": "invalid_read"}),
        ('{"type": "read", "ids": ["1", "2", "3"]}', {"type": "error", "code": "invalid_read"}),
        ('{"type": "nope"}', {"type": "error", "code": "unknown_type"}),
    ],
)
def test_client_frames_decode_to_a_frame_or_the_error_answering_it(
    text: str, decoded: dict[str, object]
) -> None:
    frame = dict(frames.decode_client(text, max_read_ids=2))
    if frame["type"] == "error":
        assert frame.pop("detail")
    assert frame == decoded


def test_ws_bytes_is_ws_text_and_built_once_per_notification_object() -> None:
    first = frames.notification(NOTIFICATION)
    again = frames.notification(NOTIFICATION)  # another socket, the same layer message
    encoded = frames.ws_bytes(first)
    assert encoded.decode() == frames.ws_text(first)
    assert frames.ws_bytes(again) is encoded
    # An equal notification that is another object (a replayed row) is
    # encoded on its own, and a different one gets its own bytes.
    other = {**NOTIFICATION, "id": "1188"}
    assert json.loads(frames.ws_bytes(frames.notification(other)))["notification"]["id"] == "1188"
    copy = dict(NOTIFICATION)
    copied = frames.ws_bytes(frames.notification(copy))
    assert copied == encoded and copied is not encoded
    assert frames.ws_bytes(frames.PONG) == b'{"type":"pong"}'
