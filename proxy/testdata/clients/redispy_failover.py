"""A redis-py client of geofailover proxy across a failover.

Run by proxy's TestOtherLanguages: for DURATION seconds it runs, in turn,
a pipeline, a transaction and a blocking pop, while a subscriber thread
receives what it publishes; the test kills and restarts the preferred
region behind the proxy meanwhile. It prints one JSON object: per kind of
operation, successes and failures in each second, and the first errors.

usage: redispy_failover.py HOST PORT DURATION
"""
import json
import sys
import threading
import time

import redis

host, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
buckets = int(duration) + 1
kinds = ["pipeline", "transaction", "blocking_pop", "pubsub_received"]
ok = {k: [0] * buckets for k in kinds}
failed = {k: [0] * buckets for k in kinds}
errors = []
lock = threading.Lock()


def record(kind, success, err=None):
    b = min(int(time.monotonic() - start), buckets - 1)
    with lock:
        (ok if success else failed)[kind][b] += 1
        if err is not None and len(errors) < 10:
            errors.append("%s: %s: %s" % (kind, type(err).__name__, err))


r = redis.Redis(host=host, port=port, socket_timeout=2)
sub = redis.Redis(host=host, port=port, socket_timeout=2).pubsub()
sub.subscribe("news")
stop = threading.Event()


def listen():
    while not stop.is_set():
        try:
            m = sub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            record("pubsub_received", False, e)
            time.sleep(0.05)
            continue
        if m is not None and m["type"] == "message":
            record("pubsub_received", True)


listener = threading.Thread(target=listen)
listener.start()
i = 0
while time.monotonic() - start < duration:
    i += 1
    try:
        p = r.pipeline(transaction=False)
        p.set("py:k%d" % (i % 8), i)
        p.get("py:k%d" % (i % 8))
        res = p.execute()
        assert res[1] == str(i).encode(), res
        record("pipeline", True)
    except Exception as e:  # noqa: BLE001
        record("pipeline", False, e)
    try:
        p = r.pipeline(transaction=True)
        p.incr("py:counter")
        p.get("py:counter")
        res = p.execute()
        assert res[1] == str(res[0]).encode(), res
        record("transaction", True)
    except Exception as e:  # noqa: BLE001
        record("transaction", False, e)
    try:
        r.rpush("py:queue", i)
        v = r.blpop("py:queue", timeout=1)
        assert v is not None, "BLPOP timed out"
        record("blocking_pop", True)
    except Exception as e:  # noqa: BLE001
        record("blocking_pop", False, e)
    try:
        r.publish("news", "m%d" % i)
    except Exception:  # noqa: BLE001 - a lost publish shows as a missing receipt
        pass
    time.sleep(0.005)
stop.set()
listener.join()
print(json.dumps({"ok": ok, "failed": failed, "errors": errors}))
