#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/props_fuzz.c to fuzz/corpus/ (see the input
format there). Seeds are well-formed requests, so that the fuzzer starts from
inputs that get past the first checks. Run from the repository root."""
import os

NAMES = ["payload_format_indicator", "message_expiry_interval", "content_type", "response_topic",
         "correlation_data", "subscription_identifier", "session_expiry_interval", "assigned_client_id",
         "server_keep_alive", "authentication_method", "authentication_data", "request_problem_information",
         "will_delay_interval", "request_response_information", "response_information", "server_reference",
         "reason_string", "receive_maximum", "topic_alias_maximum", "topic_alias", "maximum_qos",
         "retain_available", "user", "maximum_packet_size", "wildcard_subscription_available",
         "subscription_identifiers_available", "shared_subscription_available"]
EDGE_INTS = [0, 1, 2, 3, -1, 255, 256, 65535, 65536, 268435455, 268435456, 2147483647, 2147483648,
             4294967295, 4294967296]


def s(text):
    """a string value, biased encoding: 0x80, length, bytes"""
    b = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    assert len(b) < 48
    return bytes([0x80, len(b)]) + b


def i(value):
    """an integer value from the edge list: 0xC0, index"""
    return bytes([0xC0, EDGE_INTS.index(value)])


def pairs(*kv):
    out = bytes([0x80, len(kv)])
    for k, v in kv:
        out += bytes([3]) + s(k) + s(v)
    return out


def props(*items):
    out = bytes([len(items)])
    for name, value in items:
        out += bytes([NAMES.index(name)]) + value
    return out


NIL_PROPS = bytes([0])


def seed(op, topic, payload=None, qos=1, version=5, retain=False, p=NIL_PROPS, extra=i(0), extra2=None):
    flags = (1 if version == 4 else 0) | (2 if payload is None else 0) | 4 | (8 if retain else 0) | \
            (16 if extra2 is None else 0)
    out = bytes([op, flags]) + topic
    if payload is not None:
        out += payload
    out += bytes([qos + 1]) + p + extra
    if extra2 is not None:
        out += extra2
    return out


SEEDS = {
    "check_publish": seed(0, s("a/b"), s("hello"), 1),
    "check_publish_v4": seed(0, s("sensors/17/temp"), s("21.5"), 2, version=4),
    "check_publish_alias": seed(0, s(""), s("x"), 0, p=props(("topic_alias", i(1)))),
    "check_publish_utf8": seed(0, s(b"caf\xc3\xa9/\xf0\x9f\x98\x80"), s("x"), 1),
    "check_publish_bad_utf8": seed(0, s(b"a/\xed\xa0\x80"), s("x"), 1),
    "publish_props": seed(1, s("jobs/result"), s('{"ok":true}'), 1, p=props(
        ("content_type", s("application/json")), ("correlation_data", s(b"\x00\x01\x02")),
        ("user", pairs(("origin", "sensor-17"), ("k", "v"))))),
    "publish_expiry": seed(1, s("t"), s("x"), 2, retain=True, p=props(
        ("message_expiry_interval", i(4294967295)), ("payload_format_indicator", i(1)))),
    "subscribe": seed(2, s("a/+/c"), None, 1, p=props(("subscription_identifier", i(268435455)))),
    "subscribe_v4": seed(2, s("a/#"), None, 2, version=4, extra=i(2)),
    "unsubscribe": seed(3, s("a/#"), None, 0, p=props(("user", pairs(("why", "done"))))),
    "disconnect": seed(4, s("x"), None, 0, p=props(("reason_string", s("bye"))), extra=i(0), extra2=i(65535)),
    "roundtrip_op": seed(5, s("t"), None, 0, p=props(
        ("message_expiry_interval", i(4294967295)), ("response_topic", s("reply/17")),
        ("correlation_data", s(b"\xff\x00")), ("user", pairs(("a", "1"), ("a", "2"))))),
    "roundtrip_op_connack": seed(5, s("t"), None, 0, p=props(
        ("assigned_client_id", s("auto-1")), ("server_keep_alive", i(65535)), ("receive_maximum", i(1)),
        ("maximum_qos", i(1)), ("retain_available", i(0)), ("maximum_packet_size", i(2147483648)))),
    "roundtrip_msg": seed(6, s("sensors/17"), s(b"\x00binary\xff"), 1, p=props(
        ("subscription_identifier", i(1)), ("content_type", s("text/plain")), ("user", pairs(("k", "v"))))),
    "roundtrip_msg_plain": seed(6, s("a/b"), s("x"), 0),
}

if __name__ == "__main__":
    os.makedirs("fuzz/corpus", exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join("fuzz/corpus", name), "wb") as f:
            f.write(data)
    print(len(SEEDS), "seeds written to fuzz/corpus/")
