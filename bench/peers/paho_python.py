"""bench/peers/paho_python.py - the race's workload through Python paho-mqtt
(Debian's python3-paho-mqtt 1.6), driven as its docs show for throughput:
each client's network loop on its own thread (loop_start), publish() in a
loop, no in-flight or queue limit (max_inflight_messages_set(0) is not
allowed, so a large one; max_queued_messages_set(0) = unlimited).

    /usr/bin/python3 bench/peers/paho_python.py HOST PORT N SIZE QOS

Prints one "RESULT impl=python ..." line, as bench.lua does.
"""
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt

host, port, n, size, qos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
topic = "race/python/%d/%d" % (os.getpid(), time.time_ns() % 1000000)
payload = b"x" * size
state = {"received": 0, "bad": 0, "last": None}
done = threading.Event()
subscribed = threading.Event()
lock = threading.Lock()


def on_message(_c, _u, msg):
    with lock:
        state["received"] += 1
        if len(msg.payload) != size:
            state["bad"] += 1
        state["last"] = time.monotonic()
        if state["received"] == n:
            done.set()


sub = mqtt.Client(client_id="race-sub-%d" % os.getpid(), clean_session=True)
sub.on_message = on_message
sub.on_subscribe = lambda *a: subscribed.set()
sub.max_inflight_messages_set(65535)
sub.connect(host, port)
sub.loop_start()
pub = mqtt.Client(client_id="race-pub-%d" % os.getpid(), clean_session=True)
pub.max_inflight_messages_set(65535)
pub.max_queued_messages_set(0)
pub.connect(host, port)
pub.loop_start()
time.sleep(0.05)
sub.subscribe(topic, qos)
if not subscribed.wait(5):
    sys.exit("python: no SUBACK")
t0 = time.monotonic()
for _ in range(n):
    pub.publish(topic, payload, qos)
prev, progress = -1, time.monotonic()
while not done.wait(0.05):
    with lock:
        r = state["received"]
    if r != prev:
        prev, progress = r, time.monotonic()
    elif time.monotonic() - progress > 5:
        break
t1 = state["last"] or time.monotonic()
pub.loop_stop()
sub.loop_stop()
print("RESULT impl=python mode=throughput qos=%d size=%d n=%d received=%d bad=%d elapsed_s=%.4f msgs_per_s=%.0f"
      % (qos, size, n, state["received"], state["bad"], t1 - t0, state["received"] / (t1 - t0)))
