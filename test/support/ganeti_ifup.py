"""Ganeti 3.0's KVM hypervisor wiring an instance-communication NIC, with Ganeti's own code.

Run with Debian's /usr/bin/python3 and PYTHONPATH=<ganeti-3.0>/usr/share/ganeti/3.0, inside the
test's "hypervisor" network namespace and a mount namespace where /usr/lib/ganeti holds Ganeti's
scripts (kvm-ifup, net-common) and /etc/ganeti is the test node's (test/integration/ganeti-ifup.test.ts).
The environment this process has stands for the node daemon's: Ganeti's RunCmd passes it on.

stdin: one JSON operation; stdout: one JSON line.
  {"op": "tapname"}                      hv_base.GenerateTapName(): the name Ganeti gives the next
                                         communication tap (gnt.com.N, N one past the highest in use)
  {"op": "ifup", "instance": {...},      hv_kvm.KVMHypervisor._ConfigureNIC(instance, seq, nic, tap):
   "seq": N, "tap": "gnt.com.0",         runs /usr/lib/ganeti/kvm-ifup with hv_base.ConfigureNIC's
   "network": {...}}                     environment for NIC `seq` of the objects.Instance built from
                                         "instance", its network's info from "network" (as the RPC
                                         layer annotates it). Answers {"ok": true} or {"ok": false,
                                         "error": the HypervisorError's message}.
  {"op": "run", "cmd": [...], ...same}   hv_base.ConfigureNIC(cmd + [tap], ...): the same environment
                                         for another command (a probe), answering its stdout too
                                         ("output").
"""

import json
import sys

from ganeti import errors
from ganeti import objects
from ganeti import utils
from ganeti.hypervisor import hv_base
from ganeti.hypervisor import hv_kvm


def build(req):
  spec = dict(req["instance"])
  network = objects.Network(**req["network"])
  nics = []
  for n in spec.get("nics", []):
    nic = objects.NIC(**n)
    if nic.network == network.uuid:
      nic.netinfo = network.ToDict()
    nics.append(nic)
  spec["nics"] = nics
  spec["tags"] = set(spec.get("tags", []))
  spec.setdefault("disks", [])
  spec.setdefault("hvparams", {})
  spec.setdefault("beparams", {})
  spec.setdefault("osparams", {})
  instance = objects.Instance(**spec)
  return instance, nics[req["seq"]]


def main():
  req = json.load(sys.stdin)
  if req["op"] == "tapname":
    print(json.dumps({"tap": hv_base.GenerateTapName()}))
    return
  instance, nic = build(req)
  if req["op"] == "ifup":
    try:
      hv_kvm.KVMHypervisor._ConfigureNIC(instance, req["seq"], nic, req["tap"])
      print(json.dumps({"ok": True}))
    except errors.HypervisorError as err:
      print(json.dumps({"ok": False, "error": str(err)}))
    return
  # "run": ConfigureNIC's environment for a probe; RunCmd keeps its output.
  captured = {}
  real = utils.RunCmd

  def keep(cmd, **kwargs):
    result = real(cmd, **kwargs)
    captured["output"] = result.stdout
    return result

  utils.RunCmd = keep
  try:
    hv_base.ConfigureNIC(req["cmd"] + [req["tap"]], instance, req["seq"], nic, req["tap"])
    print(json.dumps({"ok": True, "output": captured.get("output", "")}))
  except errors.HypervisorError as err:
    print(json.dumps({"ok": False, "error": str(err), "output": captured.get("output", "")}))


if __name__ == "__main__":
  main()
