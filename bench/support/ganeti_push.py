"""Feed latency, push -> served, with Ganeti 3.0's own code (bench/suites/ganeti.ts).

Run inside the benchmark's network namespace with Debian's /usr/bin/python3,
PYTHONPATH=<ganeti-3.0>/usr/share/ganeti/3.0 and GANETI_ROOTDIR/GANETI_HOSTNAME naming the node
root whose var/run/ganeti holds the daemon's socket and pid file (as test/support/ganeti_feed.py,
whose "update" operation it reuses: the master's UpdateMetadata, the node daemon's RPC decoding,
backend.ModifyInstanceMetadata with its pid file check, then ganeti.metad.Client).

stdin: {"instance": {...}, "param": NAME, "count": N, "url": URL}
For i in 0..N-1: the instance's public parameter NAME becomes "v<i>-<nonce>" and is pushed; then
URL (the guest door's os/parameters.json, from the instance's comm address) is read, each time on
a new connection as a guest would, until it answers that value.
stdout: one JSON line {"pushMs": [...], "servedMs": [...], "reads": [...]}: per push the time the
push call took, the time from the push's start until a read answered the new value, and how
many reads that took (1: served by the time the push returned).
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "support"))
import ganeti_feed  # noqa: E402  pylint: disable=C0413

READ_LIMIT_S = 10.0


def read_value(url, name):
  u = urllib.parse.urlsplit(url)
  conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
  try:
    conn.request("GET", u.path, headers={"Connection": "close"})
    res = conn.getresponse()
    body = res.read()
  finally:
    conn.close()
  if res.status != 200:
    return None
  entry = json.loads(body.decode("utf-8")).get(name)
  return entry[0] if entry else None


def main():
  spec = json.load(sys.stdin)
  instance = dict(spec["instance"])
  name = spec["param"]
  nonce = "%x" % int(time.time() * 1000)
  push_ms, served_ms, reads = [], [], []
  for i in range(spec["count"]):
    value = "v%d-%s" % (i, nonce)
    instance["osparams"] = dict(instance.get("osparams", {}), **{name: value})
    t0 = time.perf_counter()
    answer = ganeti_feed.run({"op": "update", "instance": instance})
    t1 = time.perf_counter()
    if answer.get("warnings"):
      raise SystemExit("push %d: %s" % (i, answer["warnings"]))
    n = 0
    while True:
      n += 1
      if read_value(spec["url"], name) == value:
        break
      if time.perf_counter() - t0 > READ_LIMIT_S:
        raise SystemExit("push %d: %s not served within %s s" % (i, value, READ_LIMIT_S))
    t2 = time.perf_counter()
    push_ms.append((t1 - t0) * 1000)
    served_ms.append((t2 - t0) * 1000)
    reads.append(n)
  sys.stdout.write(json.dumps({"pushMs": push_ms, "servedMs": served_ms, "reads": reads}) + "\n")


if __name__ == "__main__":
  main()
