/**
 * The EC2 IMDS catalogue: the versions the dialect serves, the version that introduced each
 * gated category, and the values metad answers where the instance document has no `ec2.*`
 * counterpart. Data only; routes/render/ec2.ts renders the tree from it.
 */
/** What `GET /` lists, oldest first, `latest` last (AWS's list as of 2022-09-24). */
export const EC2_VERSIONS = [
  '1.0',
  '2007-01-19',
  '2007-03-01',
  '2007-08-29',
  '2007-10-10',
  '2007-12-15',
  '2008-02-01',
  '2008-09-01',
  '2009-04-04',
  '2011-01-01',
  '2011-05-01',
  '2012-01-12',
  '2014-02-25',
  '2014-11-05',
  '2015-10-20',
  '2016-04-19',
  '2016-06-30',
  '2016-09-02',
  '2018-03-28',
  '2018-08-17',
  '2018-09-24',
  '2019-10-01',
  '2020-10-27',
  '2021-01-03',
  '2021-03-23',
  '2021-07-15',
  '2022-09-24',
  'latest',
] as const;
export type Ec2Version = (typeof EC2_VERSIONS)[number];

/** True when `v` is a version this dialect serves (anything else is a 404). */
export function isEc2Version(v: string): v is Ec2Version {
  return (EC2_VERSIONS as readonly string[]).includes(v);
}

/**
 * The version that introduced each gated category (AWS "instance metadata categories").
 * A category whose date is not itself a listed version (region, 2020-08-24) first shows in
 * the next listed one (2020-10-27). Categories from 1.0 are not gated.
 */
export const EC2_SINCE = {
  localHostname: '2007-01-19', // local-hostname, public-hostname, public-ipv4
  instanceType: '2007-08-29',
  blockDeviceMapping: '2007-12-15',
  placement: '2008-02-01', // placement/availability-zone, kernel-id
  instanceAction: '2008-09-01',
  dynamic: '2009-04-04', // dynamic/instance-identity/
  network: '2011-01-01', // mac, network/interfaces/macs/<mac>/
  iam: '2012-01-12',
  services: '2014-02-25',
  region: '2020-08-24', // placement/region
  tags: '2021-03-23', // tags/instance/
} as const;

/** Values used when the doc has no `ec2.*` counterpart. */
export const EC2_DEFAULTS = {
  amiId: 'ami-00000000',
  /** EC2 answers `(unknown)` for EBS-backed AMIs, which is what a disk image is. */
  amiManifestPath: '(unknown)',
  instanceType: 'm1.small',
  accountId: '000000000000',
  architecture: 'x86_64',
  /** KVM virtio disks appear as vda; used for block-device-mapping/ami and /root. */
  rootDevice: '/dev/vda',
  domain: 'amazonaws.com',
  securityGroup: 'default',
} as const;
