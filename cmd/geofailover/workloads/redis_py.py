"""The reference workload from redis-py, for geofailover proxybench.

Usage: python3 redis_py.py HOST:PORT

Eight threads, each with a client of its own (redis-py's defaults, but a
100 ms socket timeout), send SET then GET on a key of their own, each as a
pipeline with a GET of the marker key geofailover:region, which names the
region that served it; 1 ms pause between rounds. It prints "ready" once
started, runs until its standard input closes, then prints one JSON object
per command: worker, write, start and end (Unix nanoseconds), err, region.
"""
import json
import sys
import threading
import time

import redis

host, port = sys.argv[1].rsplit(":", 1)
stop = threading.Event()
lock = threading.Lock()
records = []


def worker(w):
    c = redis.Redis(host=host, port=int(port), socket_timeout=0.1, socket_connect_timeout=0.1)
    key = "bench:%d" % w
    n = 0
    while not stop.is_set():
        for write in (True, False):
            if stop.is_set():
                break
            start = time.time_ns()
            err = region = None
            try:
                p = c.pipeline(transaction=False)
                if write:
                    p.set(key, n)
                else:
                    p.get(key)
                p.get("geofailover:region")
                replies = p.execute()
                region = replies[1].decode() if replies[1] is not None else None
            except Exception as e:  # every failure is a record
                err = "%s: %s" % (type(e).__name__, e)
            end = time.time_ns()
            with lock:
                records.append({"worker": w, "write": write, "start": start, "end": end, "err": err, "region": region})
            time.sleep(0.001)
        n += 1
    c.close()


threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
for r in records:
    print(json.dumps(r))
