/**
 * What guests ask, for the guest suites: the AWS SDK's token-then-GET and a mix of ~20 paths that
 * cloud-init and the SDKs read (EC2 leaves and listings with and without the trailing slash,
 * user data, the identity document, IAM credentials, OpenStack meta_data.json / network_data.json,
 * Ganeti), each answered 2xx or 301 by the bench instance (`guestInstance`).
 */
import { benchInstance, type BenchInstance } from './state.js';

export const TOKEN_PATH = '/latest/api/token';
export const TOKEN_HEADER = 'X-aws-ec2-metadata-token';
export const TTL_HEADER = 'X-aws-ec2-metadata-token-ttl-seconds';
/** The SDKs' default TTL (@aws-sdk/ec2-metadata-service, @smithy/credential-provider-imds). */
export const SDK_TTL = '21600';
const IAM_ROLE = 'bench-role';

export interface MixPath {
  path: string;
  /** Send the IMDSv2 token (EC2 paths). */
  token: boolean;
  /** Who reads it, and why it is in the mix. */
  why: string;
}

/** benchInstance(0) with IAM role credentials (so the credential paths answer). */
export function guestInstance(): BenchInstance {
  const doc = benchInstance(0);
  doc.ec2.iam = {
    role: IAM_ROLE,
    accessKeyId: 'AKIABENCHBENCHBENCH0',
    secretAccessKey: 'benchbenchbenchbenchbenchbenchbenchbench',
    token: 'IQoJb3JpZ2luX2VjE'.padEnd(800, 'B'),
    expiration: '2030-01-01T00:00:00Z',
  };
  return doc;
}

/** The mix, in the order wrk cycles through it (every path as often as every other). */
export function mixPaths(mac: string): MixPath[] {
  const ec2 = (path: string, why: string): MixPath => ({ path, token: true, why });
  const plain = (path: string, why: string): MixPath => ({ path, token: false, why });
  return [
    ec2('/latest/meta-data/', 'EC2 listing (trailing slash)'),
    ec2('/latest/meta-data', 'EC2 listing without the slash: 301'),
    ec2('/2021-03-23/meta-data/instance-id', "cloud-init's version probe"),
    ec2('/latest/meta-data/local-ipv4', 'EC2 leaf'),
    ec2('/latest/meta-data/placement/availability-zone', 'SDK region lookup'),
    ec2('/latest/meta-data/public-keys/', 'EC2 listing'),
    ec2('/latest/meta-data/public-keys/0/openssh-key', 'cloud-init SSH key'),
    ec2('/latest/meta-data/network/interfaces/macs/', 'cloud-init network config (listing)'),
    ec2(`/latest/meta-data/network/interfaces/macs/${mac}/local-ipv4s`, 'cloud-init network config (leaf)'),
    ec2('/latest/user-data', 'user data'),
    ec2('/latest/dynamic/instance-identity/document', 'identity document (signed)'),
    ec2('/latest/meta-data/iam/security-credentials/', 'SDK credential provider: role listing'),
    ec2(`/latest/meta-data/iam/security-credentials/${IAM_ROLE}`, 'SDK credential provider: credentials'),
    ec2('/latest/meta-data/iam/info', 'instance profile'),
    plain('/openstack/', 'cloud-init OpenStack version probe'),
    plain('/openstack/latest/meta_data.json', 'OpenStack metadata (fresh random_seed)'),
    plain('/openstack/latest/network_data.json', 'OpenStack network config'),
    plain('/openstack/latest/user_data', 'OpenStack user data'),
    plain('/openstack/latest/vendor_data2.json', 'OpenStack vendor data'),
    plain('/ganeti/latest/meta_data.json', 'Ganeti metadata'),
    plain('/ganeti/latest/os/parameters.json', 'Ganeti OS parameters (never cached)'),
  ];
}
