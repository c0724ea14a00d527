/** The comm network settings the unit tests of daemon/comm/ use (the defaults of routed and bridged mode). */
import type { CommSettings } from '../../daemon/comm/plan.js';

export const ROUTED_SETTINGS: CommSettings = {
  table: 'metad',
  anchor: 'metad0',
  metadataIpv4: '169.254.169.254',
  metadataIpv6: 'fe80::a9fe:a9fe',
  rangeBase: '169.254.0.0',
  prefixLen: 16,
  tcpPorts: [80],
  hopLimit: true,
  routeProto: 171,
};

export const BRIDGED_SETTINGS: CommSettings = { ...ROUTED_SETTINGS, bridge: { name: 'metadbr0', mac: '02:00:a9:fe:a9:fe' } };
