/**
 * The two instances the conformance tests register. ALPHA is the guest the clients play (comm
 * address 127.0.0.1, the source address of every client inside the namespace), with a value in
 * every field a client reads. BRAVO sits at 127.0.0.2 with different values: nothing of it may
 * ever reach a client that connects from 127.0.0.1. Every string BRAVO owns contains "bravo"
 * (any case) or is listed in BRAVO_MARKERS, and nothing of ALPHA contains "bravo".
 */

export const USER_DATA_TEXT = '#cloud-config\n# metad conformance: alpha — ünïcødé ✓\nruncmd:\n  - [echo, alpha-user-data]\n';

export const ALPHA = {
  name: 'conf-alpha',
  uuid: 'a1a1a1a1-0000-4000-8000-00000000000a',
  hostname: 'guest-alpha',
  comm: { mac: '52:54:00:aa:00:01', ipv4: '127.0.0.1' },
  userData: Buffer.from(USER_DATA_TEXT, 'utf8').toString('base64'),
  publicKeys: [
    { name: 'alice', key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlphaAliceKey0000000000000000000000000001 alice@alpha' },
    { name: 'carol', key: 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQAlphaCarolKey00000000000000000000002 carol@alpha' },
  ],
  ec2: {
    instanceId: 'i-0a1f2e3d4c5b6a798',
    amiId: 'ami-0alpha000000000001',
    instanceType: 't3.alpha',
    publicIpv4: '203.0.113.10',
    publicHostname: 'alpha.public.example',
    availabilityZone: 'eu-alpha-1a',
    accountId: '123456789012',
    securityGroups: ['sg-alpha-web', 'sg-alpha-ssh'],
    architecture: 'x86_64',
    domain: 'alpha.internal',
    exposeTags: true,
    tags: { Name: 'alpha-web', team: 'conformance' },
    iam: {
      role: 'alpha-role',
      accessKeyId: 'ASIAALPHAEXAMPLE0001',
      secretAccessKey: 'alphaSecretAccessKey/Example+0001',
      token: 'alphaSessionToken//Example==0001',
      expiration: '2035-01-02T03:04:05Z',
      lastUpdated: '2025-06-07T08:09:10Z',
      instanceProfileArn: 'arn:aws:iam::123456789012:instance-profile/alpha-profile',
      instanceProfileId: 'AIPAALPHAPROFILE0001',
    },
  },
  openstack: {
    availabilityZone: 'nova-alpha',
    projectId: 'project-alpha',
    meta: { role: 'alpha-db', tier: 'gold' },
    networkData: {
      links: [
        { id: 'tapalpha0', type: 'phy', ethernet_mac_address: '52:54:00:aa:00:11', mtu: 1450 },
        { id: 'tapalpha1', type: 'phy', ethernet_mac_address: '52:54:00:aa:00:12', mtu: 9000 },
      ],
      networks: [
        { id: 'net-alpha0', link: 'tapalpha0', type: 'ipv4_dhcp' },
        { id: 'net-alpha1', link: 'tapalpha1', type: 'ipv4', ip_address: '192.0.2.10', netmask: '255.255.255.0', routes: [] },
      ],
      services: [{ type: 'dns', address: '192.0.2.53' }],
    },
    vendorData: { 'cloud-init': '#cloud-config\nruncmd:\n  - [echo, alpha-vendor-data]\n' },
    vendorData2: { 'cloud-init': '#cloud-config\nruncmd:\n  - [echo, alpha-vendor-data2]\n' },
  },
};

/** NICs ALPHA gets late in the cloud-init test, to check the network config cloud-init derives. */
export const MULTI_NICS = [
  {
    mac: '52:54:00:aa:01:01',
    network: 'public',
    addresses: ['10.0.0.17/24', '10.0.0.18/24', '2001:db8:0:1::17/64'],
    gateway4: '10.0.0.1',
    gateway6: '2001:db8:0:1::1',
    mtu: 9000,
  },
  { mac: '52:54:00:aa:01:02', network: 'storage', addresses: ['192.168.50.3/28'] },
  { mac: '52:54:00:aa:01:03' },
];

export const BRAVO = {
  name: 'conf-bravo',
  uuid: 'b2b2b2b2-0000-4000-8000-00000000000b',
  hostname: 'guest-bravo',
  comm: { mac: '52:54:00:bb:00:02', ipv4: '127.0.0.2' },
  userData: Buffer.from('#cloud-config\n# bravo-user-data\n', 'utf8').toString('base64'),
  publicKeys: [{ name: 'bravo-key', key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBravoKey bravo@bravo' }],
  ec2: {
    instanceId: 'i-0bbbbbbbbbbbbbbbb',
    amiId: 'ami-bravo',
    instanceType: 'bravo.large',
    publicIpv4: '198.51.100.77',
    availabilityZone: 'bravo-zone-1b',
    accountId: '999988887777',
    securityGroups: ['sg-bravo'],
    domain: 'bravo.internal',
    exposeTags: true,
    tags: { Name: 'bravo-web', bravo: 'bravo-value' },
    iam: {
      role: 'bravo-role',
      accessKeyId: 'ASIABRAVOEXAMPLE0002',
      secretAccessKey: 'bravoSecretAccessKey0002',
      token: 'bravoSessionToken0002',
      expiration: '2036-06-06T06:06:06Z',
    },
  },
  openstack: {
    availabilityZone: 'nova-bravo',
    projectId: 'project-bravo',
    meta: { role: 'bravo-db' },
    vendorData: { 'cloud-init': '#cloud-config\n# bravo-vendor\n' },
    vendorData2: { bravo: 'bravo-vendor2' },
  },
};

/** BRAVO's values that do not say "bravo": its address, MAC, uuid, ids, numbers. */
const BRAVO_MARKERS = [
  '127.0.0.2',
  '52:54:00:bb:00:02',
  BRAVO.uuid,
  BRAVO.uuid.replace(/-/g, ''),
  BRAVO.ec2.instanceId,
  BRAVO.ec2.publicIpv4,
  BRAVO.ec2.accountId,
  BRAVO.userData,
  'ASIABRAVO',
  'b2b2b2b2',
];

/** Fail when any trace of BRAVO shows up in `text` (a client's output or a log). */
export function bravoTraces(text: string): string[] {
  const found: string[] = [];
  if (/bravo/i.test(text)) found.push(/.{0,40}bravo.{0,40}/i.exec(text)![0]);
  for (const m of BRAVO_MARKERS) if (text.includes(m)) found.push(m);
  return found;
}
