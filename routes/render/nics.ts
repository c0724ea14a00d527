/**
 * The guest's NICs as every dialect renders them: the comm NIC first (device 0, its address with
 * the prefix of its comm range), then the document's `nics` in order (devices 1, 2, …), each
 * with its addresses split by family. Pure: no I/O.
 */
import { parseAddressCidr, type AddressCidr } from '../../daemon/net.js';
import type { GuestView } from './view.js';

/** MTU a NIC gets when the document does not say (and the comm NIC always). */
export const DEFAULT_MTU = 1500;

export interface NicFacts {
  /** 0 for the comm NIC, then 1, 2, … in document order (EC2 `device-number`). */
  device: number;
  comm: boolean;
  mac: string;
  network?: string;
  ipv4: AddressCidr[];
  ipv6: AddressCidr[];
  gateway4?: string;
  gateway6?: string;
  mtu: number;
}

/**
 * comm {mac: '52:54:00:12:34:56', ipv4: '169.254.10.7'} with commPrefix 16, and
 * nics [{mac: '52:54:00:aa:bb:cc', addresses: ['10.0.0.17/24', '2001:db8::17/64']}] →
 *   [{device 0, comm, ipv4 [169.254.10.7/16]}, {device 1, ipv4 [10.0.0.17/24], ipv6 [2001:db8::17/64]}]
 * An address that does not parse (only a document stored before validation checked them) is left out.
 */
export function nicsOf(view: GuestView): NicFacts[] {
  const { comm, nics = [] } = view.doc;
  const out: NicFacts[] = [
    {
      device: 0,
      comm: true,
      mac: comm.mac,
      ipv4: [{ family: 4, address: comm.ipv4, prefix: view.commPrefix }],
      ipv6: [],
      mtu: DEFAULT_MTU,
    },
  ];
  nics.forEach((n, i) => {
    const addresses = (n.addresses ?? []).map(parseAddressCidr).filter((a): a is AddressCidr => a !== undefined);
    out.push({
      device: i + 1,
      comm: false,
      mac: n.mac,
      ...(n.network !== undefined ? { network: n.network } : {}),
      ipv4: addresses.filter((a) => a.family === 4),
      ipv6: addresses.filter((a) => a.family === 6),
      ...(n.gateway4 !== undefined ? { gateway4: n.gateway4 } : {}),
      ...(n.gateway6 !== undefined ? { gateway6: n.gateway6 } : {}),
      mtu: n.mtu ?? DEFAULT_MTU,
    });
  });
  return out;
}
