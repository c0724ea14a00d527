#!/usr/bin/python3
"""Crawl a metadata server with cloud-init's own datasource code.

Run with Debian's interpreter (the `cloud-init` package lives in
/usr/lib/python3/dist-packages), inside a throwaway network namespace:

    ip netns exec NS /usr/bin/python3 cloudinit_crawl.py ec2 http://127.0.0.1:PORT [--v1]
    ip netns exec NS /usr/bin/python3 cloudinit_crawl.py openstack http://127.0.0.1:PORT

Prints exactly one JSON document on stdout; cloud-init's log goes to stderr.
Exit status: 0 crawl succeeded, 1 crawl failed, 2 usage error / refused to run.

Nothing of cloud-init is edited. The driver only
  * picks the cloud explicitly instead of reading DMI: EC2 `ds._cloud_name`
    ('aws' -> IMDSv2 with a token, anything else, 'unknown' by default with
    --v1 -> IMDSv1: cloud-init 22.4 only PUTs for a token when the cloud is
    'aws'); OpenStack `detect_openstack` -> True;
  * OpenStack only: cloud-init 22.4 crawls the EC2 tree that goes into
    "ec2-metadata" from the hard-coded http://169.254.169.254 whatever
    metadata_urls says (helpers/openstack.py MetadataReader._read_ec2_metadata
    passes no metadata_address). By default the driver points that one call at
    the given URL; --keep-ec2-address leaves it alone (in a tripwired netns the
    requests are then dropped and counted, and "ec2-metadata" comes back {}).
Both are listed under "driver_patches" in the output.
"""

import argparse
import base64
import ipaddress
import json
import logging
import os
import shutil
import sys
import tempfile
from urllib.parse import urlparse

PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)


def die(code, msg):
    sys.stderr.write("cloudinit_crawl: %s\n" % msg)
    sys.exit(code)


def is_loopback_url(url):
    try:
        host = urlparse(url).hostname
    except ValueError:
        return False
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def in_own_netns():
    """True when this process runs in a named netns (`ip netns add`) or, when
    PID 1 is visible, in a network namespace other than PID 1's."""
    try:
        me = os.stat("/proc/self/ns/net")
    except OSError:
        return False
    for d in ("/run/netns", "/var/run/netns"):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            try:
                st = os.stat(os.path.join(d, n))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
                return True
    try:
        return me.st_ino != os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return False


def to_jsonable(obj):
    """bytes -> base64 text (anywhere in the structure); sets -> sorted lists."""
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_jsonable(v) for v in obj)
    return obj


def raw_or_none(value):
    """Userdata-like blobs: None for absent/empty, else base64 of the bytes."""
    if value is None or value == "" or value == b"":
        return None
    if isinstance(value, str):
        value = value.encode("utf-8")
    return base64.b64encode(value).decode("ascii")


class WarningCollector(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        try:
            self.messages.append(
                "%s: %s" % (record.levelname, record.getMessage())
            )
        except Exception:  # pragma: no cover - never let logging kill us
            pass


EMPTY_MD = (
    "cloud-init's meta-data crawl came back empty (a listed entry that is not"
    " 200 makes ec2.get_instance_metadata drop the whole tree; see the log)"
)


def make_env(tmp):
    from cloudinit import distros, helpers

    paths = helpers.Paths(
        {
            "cloud_dir": os.path.join(tmp, "cloud"),
            "run_dir": os.path.join(tmp, "run"),
            "templates_dir": os.path.join(tmp, "templates"),
            "docs_dir": os.path.join(tmp, "docs"),
        }
    )
    os.makedirs(paths.run_dir, exist_ok=True)
    distro_cls = distros.fetch("debian")
    distro = distro_cls("debian", {}, paths)
    return distro, paths


def read_instance_data_v1(paths):
    try:
        with open(paths.get_runpath("instance_data")) as fh:
            return json.load(fh).get("v1")
    except (OSError, ValueError):
        return None


def datasource_cfg(args):
    """The datasource settings both crawls pass: our URL, short timeouts, retries if asked."""
    cfg = {"timeout": args.timeout, "max_wait": args.max_wait}
    # default: cloud-init's own metadata_urls (http://169.254.169.254 first).
    if args.url != "default":
        cfg["metadata_urls"] = [args.url]
    if args.retries is not None:
        cfg["retries"] = args.retries
    return cfg


def guest_nics(args, patches):
    """Pretend the guest has NICs with the given MACs (the netns has none of
    them): cloudinit.net's interface lookups answer from this table."""
    from cloudinit import net

    macs = [m.strip().lower() for m in args.guest_macs.split(",") if m.strip()]
    by_mac = {mac: "eth%d" % i for i, mac in enumerate(macs)}
    net.get_interfaces_by_mac = lambda *a, **k: dict(by_mac)
    net.find_fallback_nic = lambda *a, **k: "eth0"
    net.get_ib_hwaddrs_by_interface = lambda *a, **k: {}
    patches.append(
        "cloudinit.net interface lookups -> %s (no such NICs in the netns)"
        % ", ".join("%s=%s" % (n, m) for m, n in by_mac.items())
    )


def network_outputs(ds):
    """The datasource's own network_config, parsed by cloud-init's
    network_state and rendered by its ENI renderer (what Debian's
    cloud-init writes to /etc/network/interfaces.d/50-cloud-init)."""
    from cloudinit.net import eni, network_state

    cfg = ds.network_config
    state = network_state.parse_net_config_data(cfg)
    return {
        "network_config": cfg,
        "network_eni": eni.Renderer()._render_interfaces(state),
    }


def crawl_ec2(args, tmp, patches):
    from cloudinit.sources import DataSourceEc2 as ec2ds

    distro, paths = make_env(tmp)
    ds_cfg = datasource_cfg(args)
    sys_cfg = {"datasource_list": ["Ec2"], "datasource": {"Ec2": ds_cfg}}
    ds = ec2ds.DataSourceEc2(sys_cfg=sys_cfg, distro=distro, paths=paths)

    cloud = args.cloud_name or (
        ec2ds.CloudNames.UNKNOWN if args.v1 else ec2ds.CloudNames.AWS
    )
    # Same attribute DataSource.cloud_name caches identify_platform() in.
    ds._cloud_name = cloud
    patches.append("DataSourceEc2._cloud_name = %r (no DMI probe)" % cloud)

    # get_data() is what cloud-init's init stage runs: _get_data() ->
    # crawl_metadata() -> wait_for_metadata_service() (token PUT on 'aws',
    # else the 2009-04-04 instance-id probe), get_metadata_api_version(),
    # user-data, meta-data/ walk, identity document (aws only); then
    # persist_instance_data() into our temporary run_dir.
    try:
        ok = ds.get_data()
    except Exception:
        # With an empty meta-data tree persist_instance_data() dies on
        # metadata["instance-id"]: report the real cause instead.
        if getattr(ds, "_crawled_metadata", None) and not ds.metadata:
            return None, EMPTY_MD
        raise
    crawled = getattr(ds, "_crawled_metadata", None) or {}
    if not ok or not crawled:
        return None, "cloud-init's Ec2 datasource found no metadata service"
    if not ds.metadata:
        return None, EMPTY_MD
    mode = "v2" if ds._api_token else "v1"
    out = {
        "datasource": "Ec2",
        "cloud_name": ds.cloud_name,
        "mode": mode,
        "metadata_address": ds.metadata_address,
        "api_version": crawled.get("_metadata_api_version"),
        "metadata": ds.metadata,
        "userdata": raw_or_none(ds.userdata_raw),
        "identity": ds.identity if ds.cloud_name == "aws" else None,
        "instance_id": ds.get_instance_id(),
        "instance_data_v1": read_instance_data_v1(paths),
    }
    if args.guest_macs:
        out.update(network_outputs(ds))
    return out, None


def crawl_openstack(args, tmp, patches):
    from cloudinit.sources import DataSourceOpenStack as osds
    from cloudinit.sources.helpers import ec2 as ec2helper
    from cloudinit.sources.helpers import openstack as oshelper

    distro, paths = make_env(tmp)
    ds_cfg = datasource_cfg(args)
    sys_cfg = {
        "datasource_list": ["OpenStack"],
        "datasource": {"OpenStack": ds_cfg},
    }

    osds.detect_openstack = lambda accept_oracle=False: True
    patches.append("DataSourceOpenStack.detect_openstack -> True (no DMI)")

    if not args.keep_ec2_address:
        base = args.url

        def _read_ec2_metadata(self):
            return ec2helper.get_instance_metadata(
                metadata_address=base,
                ssl_details=self.ssl_details,
                timeout=self.timeout,
                retries=self.retries,
            )

        oshelper.MetadataReader._read_ec2_metadata = _read_ec2_metadata
        patches.append(
            "openstack.MetadataReader._read_ec2_metadata: metadata_address=%s"
            " instead of cloud-init's hard-coded http://169.254.169.254" % base
        )

    # Spies only: record what cloud-init's own calls return.
    seen = {}
    orig_find = oshelper.BaseReader._find_working_version

    def _find_working_version(self):
        v = orig_find(self)
        seen["version"] = v
        return v

    oshelper.BaseReader._find_working_version = _find_working_version

    ds = osds.DataSourceOpenStack(sys_cfg=sys_cfg, distro=distro, paths=paths)
    orig_crawl = ds._crawl_metadata

    def _crawl_spy():
        res = orig_crawl()
        seen["results"] = res
        return res

    ds._crawl_metadata = _crawl_spy

    # get_data() -> _get_data() -> _crawl_metadata() ->
    # wait_for_metadata_service() (GET /openstack) then
    # read_metadata_service() -> MetadataReader.read_v2().
    ok = ds.get_data()
    res = seen.get("results")
    if not ok or res is None:
        return None, "cloud-init's OpenStack datasource found no metadata"
    out = {
        "datasource": "OpenStack",
        "metadata_address": ds.metadata_address,
        "openstack_version": seen.get("version"),
        "dsmode": ds.dsmode,
        "metadata": res.get("metadata"),
        "userdata": raw_or_none(res.get("userdata")),
        "vendordata": res.get("vendordata"),
        "vendordata2": res.get("vendordata2"),
        "networkdata": res.get("networkdata"),
        "ec2-metadata": res.get("ec2-metadata"),
        "files": res.get("files"),
        "instance_id": ds.get_instance_id(),
        "instance_data_v1": read_instance_data_v1(paths),
    }
    if args.guest_macs:
        out.update(network_outputs(ds))
    return out, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("ec2", "openstack"))
    ap.add_argument(
        "url",
        help="base URL, e.g. http://127.0.0.1:8080, or 'default' for cloud-init's own "
        "metadata_urls (only inside a network namespace: a comm-network test's guest)",
    )
    ap.add_argument(
        "--v1",
        action="store_true",
        help="ec2: crawl as a non-AWS EC2-compatible cloud (no token PUT)",
    )
    ap.add_argument(
        "--cloud-name",
        help="ec2: cloud name to force (default aws, or unknown with --v1)",
    )
    ap.add_argument(
        "--keep-ec2-address",
        action="store_true",
        help="openstack: leave the EC2 crawl on http://169.254.169.254",
    )
    ap.add_argument(
        "--guest-macs",
        help="comma-separated MACs the guest has (eth0, eth1, … in this order):"
        " also output the network config cloud-init derives (network_config)"
        " and the /etc/network/interfaces it would write (network_eni)",
    )
    ap.add_argument("--timeout", type=int, default=2)
    ap.add_argument("--max-wait", type=int, default=5)
    ap.add_argument(
        "--retries", type=int, default=None, help="datasource 'retries'"
    )
    ap.add_argument(
        "--log-level",
        default="WARNING",
        help="cloud-init log level on stderr (DEBUG shows every request)",
    )
    ap.add_argument(
        "--allow-host-netns",
        action="store_true",
        help="run outside a network namespace (skips cloud-init's DNS probe)",
    )
    args = ap.parse_args(argv)

    if args.url == "default":
        if args.kind != "ec2" or args.allow_host_netns or not in_own_netns():
            die(2, "'default' (cloud-init's own URLs) is for an ec2 crawl inside a network namespace only")
    elif not is_loopback_url(args.url):
        die(2, "refusing non-loopback URL %r" % args.url)
    if not in_own_netns() and not args.allow_host_netns:
        die(
            2,
            "not inside a network namespace; run via `ip netns exec` "
            "(or pass --allow-host-netns)",
        )

    # requests honours *_proxy: never let a crawl of 127.0.0.1 go elsewhere.
    for var in PROXY_VARS:
        os.environ.pop(var, None)
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "*"

    try:
        import cloudinit.log  # noqa: F401
        from cloudinit import util, version
    except ImportError as e:
        die(2, "cannot import cloud-init (apt-get install cloud-init): %s" % e)

    # Importing cloudinit.log resets the root logger: configure after it.
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level.upper(), logging.WARNING),
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        force=True,
    )
    collector = WarningCollector()
    logging.getLogger().addHandler(collector)

    patches = []
    if not in_own_netns():
        # util.is_resolvable_url() first resolves three names that must not
        # exist to detect DNS redirection; outside a netns that would reach
        # the machine's resolver. Pre-seed its cache (empty set = no
        # redirection seen).
        util._DNS_REDIRECT_IP = set()
        patches.append("util._DNS_REDIRECT_IP = set() (host netns)")

    if args.guest_macs:
        guest_nics(args, patches)

    tmp = tempfile.mkdtemp(prefix="cloudinit-crawl-")
    try:
        crawl = crawl_ec2 if args.kind == "ec2" else crawl_openstack
        try:
            out, err = crawl(args, tmp, patches)
        except Exception as e:  # cloud-init raised out of get_data()
            logging.getLogger(__name__).exception("crawl raised")
            out, err = None, "crawl raised %s: %s" % (type(e).__name__, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if out is None:
        die(1, err)
    out["cloud_init_version"] = version.version_string()
    out["driver_patches"] = patches
    out["warnings"] = collector.messages
    json.dump(to_jsonable(out), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
