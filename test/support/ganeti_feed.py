"""Feed a metadata daemon the way a Ganeti 3.0 cluster does, with Ganeti's own code.

Run with Debian's /usr/bin/python3, PYTHONPATH=<ganeti-3.0>/usr/share/ganeti/3.0 and
GANETI_ROOTDIR/GANETI_HOSTNAME naming the node root whose var/run/ganeti holds the daemon's
socket and pid file (Ganeti's virtual-cluster paths: nothing under the real /var/run/ganeti).

stdin: a JSON list of operations, each answered by one JSON line on stdout:
  {"op": "echo", "arg": "x"}             ganeti.metad.Client().Echo(x)
  {"op": "alive"}                        utils.IsDaemonAlive("ganeti-metad"): what the node
                                         daemon checks before every push
  {"op": "update", "instance": {...},    the master's UpdateMetadata (cmdlib/instance_utils.py)
   "osparams_public"?, "osparams_private"?, "osparams_secret"?}
                                         with an objects.Instance built from "instance"; its RPC
                                         body is encoded as the master encodes it and handled as
                                         the node daemon handles it (server/noded.py, then
                                         backend.ModifyInstanceMetadata, which checks the pid
                                         file and calls metad.Client().UpdateConfig). Answers
                                         the warnings the operator would see (none: it worked).
  {"op": "client-update", ...same}       metad.Client().UpdateConfig(the same dict) directly:
                                         answers the exception class and message it raises.
  {"op": "os-search-path"}               constants.OS_SEARCH_PATH
  {"op": "export-os", "instance": {...}, backend.ExportOS(instance, env): the OS install package
   "env"?: {...},                        as the node daemon builds it for `gnt-instance add`
   "helper"?: {"script": s, "disks": n}, with an install image (a .tgz from tempfile.mkstemp in
   "os_search_path"?: [dir, ...]}        $TMPDIR: the OS definition under os/, the environment).
                                         "helper": env starts from the master's
                                         LUInstanceCreate.GetOsInstallPackageEnvironment for a KVM
                                         instance of n disks (OS_SCRIPT=s, DISK_<i>_PATH=/dev/vdb…),
                                         "env" on top. "os_search_path" replaces Ganeti's
                                         OS_SEARCH_PATH (where OSFromDisk finds instance.os)
"""

import json
import sys

from ganeti import backend
from ganeti import constants
from ganeti import metad
from ganeti import objects
from ganeti import pathutils
from ganeti import serializer
from ganeti import utils
from ganeti.cmdlib.instance_create import LUInstanceCreate
from ganeti.cmdlib.instance_utils import UpdateMetadata
from ganeti.rpc.node import RpcResult


def build_instance(spec):
  fields = dict(spec)
  fields["nics"] = [objects.NIC(**n) for n in spec.get("nics", [])]
  fields["osparams_private"] = serializer.PrivateDict(spec.get("osparams_private", {}))
  fields.setdefault("disks", [])
  fields.setdefault("hvparams", {})
  fields.setdefault("beparams", {})
  fields.setdefault("osparams", {})
  fields.setdefault("admin_state", "up")
  return objects.Instance(**fields)


def private(value):
  return None if value is None else serializer.PrivateDict(value)


class NodeRpc(object):
  """The master's RPC runner for the one call UpdateMetadata makes, to this node."""

  def call_instance_metadata_modify(self, node, data):
    # The master's encoding (rpc/node.py _Call) and the node daemon's decoding and error
    # handling (server/noded.py HandleRequest).
    body = serializer.DumpJson([data], private_encoder=serializer.EncodeWithPrivateFields)
    try:
      (instance,) = serializer.LoadJson(body)
      result = (True, backend.ModifyInstanceMetadata(instance))
    except backend.RPCFail as err:
      result = (False, str(err))
    except Exception as err:  # pylint: disable=W0703
      result = (False, "Error while executing backend function: %s" % str(err))
    return RpcResult(data=result, node=node, call="instance_metadata_modify")


class _HelperConfig(object):
  """The master's configuration, as far as GetOsInstallPackageEnvironment reads it."""

  def __init__(self, disks):
    self.disks = disks

  def GetInstanceDisks(self, _uuid):
    return [None] * self.disks


def helper_env(instance, script, disks):
  """The master's environment for the helper VM (cmdlib/instance_create.py), Ganeti's code."""
  lu = type("LU", (object,), {})()
  lu.cfg = _HelperConfig(disks)
  return LUInstanceCreate.GetOsInstallPackageEnvironment(lu, instance, script)


def update_dict(op):
  """The dict UpdateMetadata sends, for client-update."""
  data = build_instance(op["instance"]).ToDict()
  if op.get("osparams_public") is not None:
    data["osparams_public"] = op["osparams_public"]
  if op.get("osparams_private") is not None:
    data["osparams_private"] = private(op["osparams_private"])
  data["osparams_secret"] = private(op.get("osparams_secret") or {})
  return data


def run(op):
  kind = op["op"]
  if kind == "echo":
    return {"result": metad.Client().Echo(op["arg"])}
  if kind == "alive":
    return {"result": bool(utils.IsDaemonAlive(constants.METAD))}
  if kind == "os-search-path":
    return {"result": list(constants.OS_SEARCH_PATH)}
  if kind == "update":
    instance = build_instance(op["instance"])
    instance.primary_node = "node1"
    warnings = []
    UpdateMetadata(warnings.append, NodeRpc(), instance,
                   osparams_public=op.get("osparams_public"),
                   osparams_private=private(op.get("osparams_private")),
                   osparams_secret=private(op.get("osparams_secret")))
    return {"warnings": warnings}
  if kind == "export-os":
    instance = build_instance(op["instance"])
    instance.primary_node = "node1"
    instance.disks_info = []  # what the master's RPC encoding adds (no disks here)
    instance.secondary_nodes = []
    env = {}
    if op.get("helper"):
      env.update(helper_env(instance, op["helper"]["script"], op["helper"]["disks"]))
    env.update(op.get("env") or {})
    if op.get("os_search_path"):
      pathutils.OS_SEARCH_PATH = op["os_search_path"]
    return {"result": backend.ExportOS(instance, env)}
  if kind == "client-update":
    try:
      return {"result": metad.Client().UpdateConfig(update_dict(op))}
    except Exception as err:  # pylint: disable=W0703
      return {"error": type(err).__name__, "message": str(err)}
  raise ValueError("unknown op %r" % kind)


def main():
  for op in json.load(sys.stdin):
    sys.stdout.write(json.dumps(run(op)) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
  main()
