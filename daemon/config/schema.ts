/**
 * The daemon's configuration schema: every key with its type, default and meaning (the
 * `description`s feed docs/configuration.md through daemon/config/doc.ts). Pure data; loading,
 * validation and cross-field checks live in daemon/config/config.ts.
 */

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    stateDir: {
      type: 'string',
      default: '/var/lib/metad',
      description:
        'Directory of the durable state: `instances/` (one sealed file per instance), `private.key`, `identity-key.pem`, `quarantine/`. Created 0700 if missing.',
    },
    keyFile: {
      type: 'string',
      description:
        'The 32-byte master key that seals private values and authenticates state files. Unset: `<stateDir>/private.key`, created 0600 on first start. When set, the file must exist (mode 0600 or stricter).',
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Logging: pino JSON lines on stdout (docs/logging.md lists every message).',
      properties: {
        level: {
          type: 'string',
          enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
          default: 'info',
          description: 'Least severe level written.',
        },
      },
    },
    admin: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The admin door: HTTP over a unix socket (docs/admin-api.md).',
      properties: {
        socket: {
          type: 'string',
          default: '/run/metad/admin.sock',
          description: 'Path of the admin socket; its directory is created (0750) if missing, a stale socket is replaced.',
        },
        socketMode: {
          type: 'string',
          pattern: '^0?[0-7]{3}$',
          default: '0660',
          description: 'Octal permission bits of the admin socket: whoever can connect is an admin.',
        },
        maxBodyBytes: {
          type: 'integer',
          minimum: 1024,
          maximum: 16777216,
          default: 262144,
          description: 'Largest admin request body (instance documents, patches, params); larger ones get 413.',
        },
      },
    },
    guest: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The guest door: the metadata service guests reach on the comm network (docs/guest-api.md).',
      properties: {
        listen: {
          type: 'array',
          minItems: 1,
          default: [{ host: '169.254.169.254', port: 80 }],
          description:
            'Addresses the guest door listens on (the address must already be on an interface; two entries may not share host and port).',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['host'],
            description: 'One listening address.',
            properties: {
              host: { type: 'string', format: 'ip', description: 'IPv4 or IPv6 address (not a host name).' },
              port: {
                type: 'integer',
                minimum: 0,
                maximum: 65535,
                default: 80,
                description: 'TCP port; 0 picks a free one (tests). Ports below 1024 need CAP_NET_BIND_SERVICE.',
              },
            },
          },
        },
        commRange: {
          type: 'array',
          minItems: 1,
          maxItems: 64,
          items: { type: 'string', format: 'ipv4-cidr' },
          default: ['169.254.0.0/16'],
          description:
            "Comm IPv4 ranges: a registered instance's comm address must lie in one of them, and its comm NIC gets the prefix of the most specific one (OpenStack netmask, EC2 subnet). A single string is read as a one-element list.",
        },
        rateLimit: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Per-instance token bucket on guest requests; over it a guest gets 429 with Retry-After.',
          properties: {
            ratePerSec: { type: 'number', minimum: 0.1, default: 100, description: 'Requests per second refilled.' },
            burst: { type: 'integer', minimum: 1, default: 200, description: 'Bucket size: requests allowed at once.' },
          },
        },
        headersTimeoutMs: {
          type: 'integer',
          minimum: 100,
          default: 5000,
          description: "A request's headers must arrive within this time (no more than requestTimeoutMs).",
        },
        requestTimeoutMs: {
          type: 'integer',
          minimum: 100,
          default: 10000,
          description: 'A whole request (headers and body) must arrive within this time.',
        },
        keepAliveTimeoutMs: {
          type: 'integer',
          minimum: 100,
          default: 5000,
          description: 'An idle keep-alive connection is closed after this time.',
        },
        maxConnections: {
          type: 'integer',
          minimum: 1,
          default: 4096,
          description: 'Open guest connections in all; further ones are closed at once.',
        },
        maxConnectionsPerSource: {
          type: 'integer',
          minimum: 1,
          default: 64,
          description: 'Open guest connections per source address; further ones are closed at once.',
        },
        cacheInstances: {
          type: 'integer',
          minimum: 1,
          default: 2048,
          description: 'Instances whose rendered answers are kept (least recently rendered dropped first); ~25 KiB each.',
        },
      },
    },
    secrets: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Secret OS parameters (kept in memory only, never on disk).',
      properties: {
        defaultTtlSec: {
          type: 'integer',
          minimum: 1,
          maximum: 604800,
          default: 7200,
          description:
            'Lifetime of a secret value when the request gives no ttlSec; no shorter than /appliance/installTimeoutMs (the default install deadline), so a secret cannot expire in the middle of an install.',
        },
      },
    },
    pipe: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The host↔guest pipe (Ganeti `read`/`write`, admin `pipe`).',
      properties: {
        maxBytes: {
          type: 'integer',
          minimum: 1,
          maximum: 67108864,
          default: 1048576,
          description: 'Bytes each direction holds; a write that does not fit is refused whole (413).',
        },
      },
    },
    store: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The instance registry on disk.',
      properties: {
        maxDocumentBytes: {
          type: 'integer',
          minimum: 1024,
          default: 262144,
          description: 'Largest stored instance document (after a patch or param change); larger ones get 413.',
        },
      },
    },
    storage: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'Where instance disks may live (`hardware.disks[].path`), like Ganeti\'s file-storage paths and volume groups. Empty (the default): no install job may attach a disk. Disk paths are checked at the install request and again when the run is prepared, on the resolved path that libvirt gets (docs/deployment.md, "Instance disks").',
      properties: {
        fileRoots: {
          type: 'array',
          default: [],
          maxItems: 64,
          items: { type: 'string', pattern: '^/', minLength: 2, maxLength: 1024 },
          description:
            'Directories whose regular files may be instance disks (e.g. `/srv/ganeti/file-storage`). A disk path must lie under one of them, and so must the file it resolves to; never a FIFO, socket, device, directory or a symlink out.',
        },
        imageRoots: {
          type: 'array',
          default: [],
          maxItems: 64,
          items: { type: 'string', pattern: '^/', minLength: 2, maxLength: 1024 },
          description:
            "Directories whose regular files may be an instance's OS image (`install.image.path`): written onto its first disk before the OS scripts run, once its sha256 matches. The file must resolve inside a root and be writable by its owner only. Empty (the default): no OS image.",
        },
        blockRoots: {
          type: 'array',
          default: [],
          maxItems: 64,
          items: { type: 'string', pattern: '^/dev/.', maxLength: 1024 },
          description:
            'Directories of block devices that may be instance disks: an LVM volume group (`/dev/vg0`: its `/dev/vg0/<lv>` links must resolve to the device-mapper device of that very logical volume) or a directory of device nodes. Whole disks of the host are never under a root unless you put them there.',
        },
      },
    },
    os: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: "OS definitions (Ganeti's OS API): found by name, never by a path an instance names.",
      properties: {
        searchPath: {
          type: 'array',
          default: ['/srv/ganeti/os', '/usr/local/lib/ganeti/os', '/usr/lib/ganeti/os', '/usr/share/ganeti/os'],
          maxItems: 32,
          items: { type: 'string', pattern: '^/', minLength: 2, maxLength: 1024 },
          description:
            "Ganeti's `os_search_path`: the directories searched, in order, for `<dir>/<os name>` (the part of `os.name` before `+`). The first directory holding it wins. Its scripts are what `os/scripts/` serves the instance.",
        },
      },
    },
    ganeti: {
      type: 'object',
      additionalProperties: false,
      description:
        "The Ganeti feed (docs/ganeti.md): metad takes ganeti-metad's place on a Ganeti 3.0 node, listening on its config socket for the instances Ganeti's node daemon pushes (`echo`, `updateConfig`). Absent (the default): off. `ganeti: {}` turns it on with Ganeti's own paths. OS definitions of fed instances are found in /os/searchPath (Ganeti's `os_search_path` order).",
      properties: {
        socket: {
          type: 'string',
          pattern: '^/',
          maxLength: 107,
          default: '/var/run/ganeti/socket/ganeti-metad',
          description:
            "The unix socket Ganeti's node daemon connects to (Ganeti's `pathutils.METAD_SOCKET`). Its directory must exist and be writable by metad (Ganeti makes it 0770 gnt-masterd:gnt-daemons: run metad in group gnt-daemons). A live socket there (ganeti-metad still running) stops metad's start; a stale one is replaced.",
        },
        socketMode: {
          type: 'string',
          pattern: '^0?[0-7]{3}$',
          default: '0600',
          description:
            "Octal permission bits of the socket, as ganeti-metad sets them: its one client, Ganeti's node daemon, runs as root. Whoever can connect can register and remove every instance Ganeti feeds.",
        },
        socketGroup: {
          type: 'string',
          pattern: '^([A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10})$',
          description:
            "Group of the socket (a name from /etc/group or a number); ganeti-metad's is gnt-daemons. Unset: metad's own group. The owner is always metad's own user.",
        },
        pidFile: {
          type: 'string',
          pattern: '^/',
          default: '/var/run/ganeti/ganeti-metad.pid',
          description:
            "Where metad writes its pid while the feed listens (removed at stop). Ganeti's node daemon starts ganeti-metad before each push unless this file names a live process (`utils.IsDaemonAlive`), so keep Ganeti's path.",
        },
        maxMessageBytes: {
          type: 'integer',
          minimum: 4096,
          maximum: 67108864,
          default: 1048576,
          description: 'Largest request on the socket (one instance); a larger one is answered with an error and the connection closed.',
        },
        packageRoots: {
          type: 'array',
          default: ['/tmp'],
          maxItems: 32,
          items: { type: 'string', pattern: '^/', minLength: 1, maxLength: 1024 },
          description:
            "Directories whose files `os/os-install-package` and `os/package` may serve (the files the public parameters `os-install-package` and `os-package` name, as Ganeti pushed them). Ganeti's `ExportOS` writes the install package to the node daemon's temp dir (`/tmp`); the file's real path must lie inside a root. `[]`: never served. metad's unit needs a drop-in to see the node's `/tmp` and read root's files (docs/ganeti.md).",
        },
        packageMaxBytes: {
          type: 'integer',
          minimum: 1024,
          maximum: 17179869184,
          default: 268435456,
          description: 'Largest package file served (its size on disk); a larger one is not served (404).',
        },
        packageMaxEntries: {
          type: 'integer',
          minimum: 1,
          maximum: 1000000,
          default: 10000,
          description: 'Most entries a served package may hold: the transfer is cut at the entry after (log `guest OS package cut`).',
        },
        packageMaxEntryBytes: {
          type: 'integer',
          minimum: 1024,
          maximum: 17179869184,
          default: 268435456,
          description: 'Largest entry (unpacked) of a served package: the transfer is cut before a larger one.',
        },
        packageMaxUnpackedBytes: {
          type: 'integer',
          minimum: 1024,
          maximum: 68719476736,
          default: 1073741824,
          description: 'Most bytes a served package may unpack to, all entries together (a gzip bomb is cut there).',
        },
        secrets: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description:
            'Secret parameters Ganeti pushes (`osparams_secret`): each push that carries them opens a window in which they are served to the instance\'s comm address, until the first of the claim, the TTL, a push without them, the comm tap going down after it came up (docs/ganeti.md, "When a secret parameter is served").',
          properties: {
            claim: {
              type: 'string',
              enum: ['once', 'ttl'],
              default: 'once',
              description:
                'once: the first GET of os/parameters.json that carries the secret values ends the window (the helper VM reads them, nobody after it); ttl: that GET is recorded as the claim and the values stay served until another end.',
            },
            ttlSec: {
              type: 'integer',
              minimum: 60,
              maximum: 86400,
              default: 7500,
              description:
                "How long a window stays open at most, from the push. The default is Ganeti's own bound on a helper VM: `HELPER_VM_STARTUP` (300 s) + `HELPER_VM_SHUTDOWN` (7200 s); raise it with `gnt-instance add --helper-startup-timeout/--helper-shutdown-timeout`.",
            },
          },
        },
      },
    },
    network: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The host-only comm network metad sets up itself (docs/deployment.md).',
      properties: {
        mode: {
          type: 'string',
          enum: ['off', 'routed', 'bridged'],
          default: 'off',
          description:
            'off: the operator wires the comm network (and the loopback quick start needs no root); routed: one tap per guest, /32 routes, nftables and static DHCP set up by metad (needs CAP_NET_ADMIN); bridged: the taps are isolated ports of one comm bridge metad owns, filtered per port (no IPv6: docs/deployment.md).',
        },
        bridge: {
          type: 'string',
          pattern: '^[A-Za-z0-9_.-]{1,15}$',
          default: 'metadbr0',
          description: 'bridged mode: the comm bridge metad creates and owns (it holds 169.254.169.254).',
        },
        bridgeMac: {
          type: 'string',
          pattern: '^[0-9A-Fa-f][02468aceACE]:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}$',
          default: '02:00:a9:fe:a9:fe',
          description:
            "bridged mode: the bridge's fixed unicast MAC (without one a bridge takes a port's MAC and changes it as taps come and go).",
        },
        anchor: {
          type: 'string',
          pattern: '^[A-Za-z0-9_.-]{1,14}$',
          default: 'metad0',
          description:
            'Device that holds 169.254.169.254 from start, before any tap exists (a dummy, or a veth pair NAMEp where the kernel has no dummy driver).',
        },
        table: {
          type: 'string',
          pattern: '^[A-Za-z0-9_]{1,32}$',
          default: 'metad',
          description: 'The nftables table (family inet) metad owns and replaces whole.',
        },
        hopLimit: {
          type: 'boolean',
          default: true,
          description:
            'Send metadata replies on the taps with IP TTL / hop limit 1, so containers behind a guest cannot reach the metadata service.',
        },
        ec2Ipv6: {
          type: 'boolean',
          default: false,
          description:
            "Routed mode only: also serve EC2's IPv6 metadata address fd00:ec2::254 (on the anchor and every tap) to guests' link-local sources, identified by their tap; other IPv6 sources stay dropped (docs/deployment.md).",
        },
        openTcpPorts: {
          type: 'array',
          default: [],
          uniqueItems: true,
          maxItems: 16,
          items: { type: 'integer', minimum: 1, maximum: 65535 },
          description: 'TCP ports on 169.254.169.254 guests may reach besides the guest door port.',
        },
        ipPath: { type: 'string', default: '/usr/sbin/ip', description: 'iproute2 `ip` binary.' },
        nftPath: { type: 'string', default: '/usr/sbin/nft', description: 'nftables `nft` binary.' },
        runDir: { type: 'string', default: '/run/metad/comm', description: "Runtime dir for dnsmasq's generated config and hosts file." },
        dhcp: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Static DHCP (MAC -> comm IPv4 from the registry) on the comm taps.',
          properties: {
            mode: {
              type: 'string',
              enum: ['managed', 'external'],
              default: 'managed',
              description:
                'managed: metad runs and supervises dnsmasq; external: an operator-run DHCP server (metad still writes <runDir>/dhcp-hosts).',
            },
            dnsmasqPath: { type: 'string', default: '/usr/sbin/dnsmasq', description: 'dnsmasq binary (Debian package dnsmasq-base).' },
            leaseTimeSec: {
              type: 'integer',
              minimum: 120,
              maximum: 31536000,
              default: 3600,
              description: 'DHCP lease time offered to guests.',
            },
            user: {
              type: 'string',
              minLength: 1,
              pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$',
              description:
                "User dnsmasq runs as (with its primary group) when metad runs as root; default `dnsmasq` if that user exists, else `nobody`. It must be able to read <runDir>/dhcp-hosts (metad writes it 0644 in a 0755 dir; the dirs above must be searchable). When metad is not root (the systemd unit), dnsmasq runs as metad's own user.",
            },
          },
        },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'Prometheus metrics (docs/metrics.md). Always served on the admin socket (`GET /v1/metrics`); optionally also on a TCP listener for a scraper that cannot reach the socket.',
      properties: {
        listen: {
          type: 'object',
          additionalProperties: false,
          required: ['host', 'port'],
          description:
            'Off when absent. A TCP listener that serves only `GET /metrics` (names and counts, never values). Never an address a guest can reach: a host inside a `guest.commRange` range, the metadata address or a guest listener is refused. Example: `{host: 127.0.0.1, port: 9169}` with a loopback-only scraper, or a management address.',
          properties: {
            host: { type: 'string', minLength: 1, description: 'Address to bind (IPv4 or IPv6 literal).' },
            port: { type: 'integer', minimum: 0, maximum: 65535, description: 'TCP port (0: any free port, for tests).' },
          },
        },
      },
    },
    appliance: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Install appliances and their jobs (`metadctl install`).',
      properties: {
        enabled: {
          type: 'boolean',
          default: true,
          description:
            'Whether this host runs install jobs. false: a host that never installs (metadata only): install requests answer 503, and neither `metad check-config` nor the start-up warns about a missing appliance image, QEMU or libvirt binding. Installs also need `network.mode` routed or bridged.',
        },
        bootTimeoutMs: {
          type: 'integer',
          minimum: 1,
          default: 300000,
          description: 'How long an appliance may take to boot (reserved: validated, not used yet).',
        },
        installTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          default: 7200000,
          description:
            'The cluster-wide hard deadline of an install job, counted from the moment it leaves the queue; guest traffic never extends it.',
        },
        maxTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          default: 14400000,
          description: 'Largest per-job deadline an install request may ask for (timeoutSec); at least installTimeoutMs.',
        },
        maxConcurrent: {
          type: 'integer',
          minimum: 1,
          maximum: 256,
          default: 2,
          description: 'Install jobs running at once; further ones wait in the queue (state queued).',
        },
        maxQueueMs: {
          type: 'integer',
          minimum: 1000,
          default: 3600000,
          description:
            'How long an install job may wait in the queue (from its request); a job still queued then ends failed ("queued too long") and its secrets are wiped.',
        },
        claimDeadlineMs: {
          type: 'integer',
          minimum: 1000,
          default: 300000,
          description:
            'The appliance must read its secret parameters within this time of its start; otherwise the job is stuck and its domain destroyed. Also how long the appliance agent keeps retrying metad (kernel command line `metad.claim`), so a metad restart within it costs the install nothing.',
        },
        pollMs: {
          type: 'integer',
          minimum: 10,
          maximum: 10000,
          default: 250,
          description: 'How often a running job checks its domain and progress (deadlines are exact, not rounded to this).',
        },
        libvirtUri: {
          type: 'string',
          minLength: 1,
          default: 'qemu:///system',
          description: 'libvirt connection URI of the install appliances.',
        },
        cacheDir: {
          type: 'string',
          default: '/var/cache/metad/appliance',
          description:
            '`metad appliance build` builds the appliance here (appliance/build.sh: one read-only `<stamp>/` per kernel, busybox and agent) and points `current` at the newest build.',
        },
        imageDir: {
          type: 'string',
          description:
            'A finished appliance build (`vmlinux`, `initrd.cpio`, `manifest.json`). Unset: `<cacheDir>/current`. Read at each job start, so a new build takes effect for the next job.',
        },
        virtType: {
          type: 'string',
          enum: ['auto', 'kvm', 'qemu'],
          default: 'auto',
          description:
            'kvm: hardware acceleration; qemu: TCG emulation (works anywhere, slower); auto: a trial boot of KVM once per daemon life, TCG when it fails (a `/dev/kvm` that exists need not work).',
        },
        memoryMiB: {
          type: 'integer',
          minimum: 128,
          maximum: 1048576,
          default: 256,
          description: "The appliance's memory when the instance has no `hardware.memoryMiB`, and the least it gets (it boots from RAM).",
        },
        vcpus: {
          type: 'integer',
          minimum: 1,
          maximum: 64,
          default: 1,
          description: "The appliance's vCPUs when the instance has no `hardware.vcpus` (at most 64).",
        },
        runDir: {
          type: 'string',
          default: '/run/metad/jobs',
          description:
            "Runtime dir (keep it on a tmpfs) of the appliances' serial console logs: the create script's output may print parameter values. A log is deleted when its job ends.",
        },
        baseDisk: {
          type: 'string',
          description:
            "A disk for every busybox run: a read-only qcow2 base image; each run gets a fresh qcow2 overlay over it in overlayDir (deleted afterwards), attached after the instance's disks. Unset (the default): the busybox appliance runs from RAM with no appliance disk. The Debian variant's disk is `debianRoot`.",
        },
        variant: {
          type: 'string',
          enum: ['busybox', 'debian'],
          default: 'busybox',
          description:
            "The appliance variant of an OS definition whose `metad_appliance` file names none. `busybox`: the kernel and initramfs only, fast; runs `#!/bin/sh` scripts. `debian`: the same kernel and initramfs, plus a Debian userland (bash, util-linux, e2fsprogs, fdisk, kpartx, qemu-utils, debootstrap, …) on a read-only root disk (`debianRoot`, through a per-run overlay) where the OS scripts run: real definitions such as Debian's ganeti-instance-debootstrap, unmodified.",
        },
        debianRoot: {
          type: 'string',
          description:
            "The Debian variant's read-only root disk (qcow2; each run boots it through a fresh overlay in overlayDir, deleted afterwards). Unset: `<cacheDir>/current-debian/root.qcow2`, what `metad appliance build --variant debian` makes.",
        },
        shares: {
          type: 'array',
          default: [],
          maxItems: 8,
          description:
            "Host directories handed to the Debian variant read-only (virtio 9p), mounted at `target` inside its root before the OS scripts run: e.g. ganeti-instance-debootstrap's cache tarballs (`/var/cache/ganeti-instance-debootstrap`) and its configuration (`/etc/ganeti/instance-debootstrap`: variants, hooks). Never writable by the appliance; not given to busybox runs.",
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['source', 'target'],
            properties: {
              source: {
                type: 'string',
                pattern: '^/[A-Za-z0-9/._+-]*$',
                maxLength: 1024,
                description: 'The host directory (absolute; resolved when a run is prepared, and it must be a directory then).',
              },
              target: {
                type: 'string',
                pattern: '^(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+$',
                maxLength: 200,
                description: 'Where it appears inside the Debian root (absolute; no `.` or `..` component).',
              },
            },
          },
        },
        overlayDir: {
          type: 'string',
          default: '/var/lib/metad/overlays',
          description: 'Where the per-run overlays (of baseDisk, or of the Debian root) live while their job runs.',
        },
        qemuImgPath: {
          type: 'string',
          default: '/usr/bin/qemu-img',
          description: '`qemu-img` (Debian package qemu-utils), for the overlays.',
        },
        emulator: {
          type: 'string',
          default: '/usr/bin/qemu-system-x86_64',
          description: 'QEMU binary of the appliance domains (Debian package qemu-system-x86).',
        },
        firmware: {
          type: 'string',
          default: '/usr/share/qemu/qboot.rom',
          description: 'Firmware ROM (qboot boots the PVH kernel directly; Debian package qemu-system-data).',
        },
        agentTimeoutSec: {
          type: 'integer',
          minimum: 1,
          maximum: 600,
          default: 10,
          description: "Timeout of each of the appliance agent's network calls (kernel command line `metad.timeout`).",
        },
        shutdownGraceMs: {
          type: 'integer',
          minimum: 0,
          default: 10000,
          description: 'Grace time for an appliance to shut down before it is stopped.',
        },
        package: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description:
            "The personalization package (an instance's `install.packageUrl`): fetched while the install job runs, streamed to the appliance through the archive checks, never stored (docs/guest-api.md).",
          properties: {
            maxBytes: {
              type: 'integer',
              minimum: 1024,
              maximum: 68719476736,
              default: 1073741824,
              description: 'Most bytes fetched (compressed): a larger Content-Length is refused before any byte, a longer body is cut.',
            },
            maxEntries: {
              type: 'integer',
              minimum: 1,
              maximum: 10000000,
              default: 100000,
              description: 'Most entries the archive may hold.',
            },
            maxEntryBytes: {
              type: 'integer',
              minimum: 1024,
              maximum: 68719476736,
              default: 1073741824,
              description: 'Largest entry, unpacked.',
            },
            maxUnpackedBytes: {
              type: 'integer',
              minimum: 1024,
              maximum: 274877906944,
              default: 4294967296,
              description: 'Most bytes the archive may unpack to, all entries together (a gzip bomb is cut there).',
            },
            connectTimeoutMs: {
              type: 'integer',
              minimum: 100,
              maximum: 600000,
              default: 10000,
              description: 'Name lookup and connect (and TLS handshake) each within this.',
            },
            responseTimeoutMs: {
              type: 'integer',
              minimum: 100,
              maximum: 600000,
              default: 30000,
              description: "The server's answer (its headers) within this of the request.",
            },
            idleTimeoutMs: {
              type: 'integer',
              minimum: 100,
              maximum: 600000,
              default: 30000,
              description: 'Longest pause between two parts of the body.',
            },
            maxRedirects: {
              type: 'integer',
              minimum: 0,
              maximum: 20,
              default: 5,
              description: 'Most redirects followed (credentials never follow one to another origin; https to http is refused).',
            },
          },
        },
      },
    },
  },
} as const;
