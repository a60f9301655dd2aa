// NSD (Debian's), serving zone files on one loopback address: the reference server the DNS
// benchmark compares against, and the parent zone that domain-verification tests delegate from.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { createSocket } from 'node:dgram';
import { ServiceProcess, waitUntil } from './process.ts';

export interface NsdZone {
  name: string;
  /** The zone file's text. */
  text: string;
}

/** True once `ip:53` answers a SOA query for `zone` (over UDP, without dig). */
async function answersSoa(ip: string, zone: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createSocket('udp4');
    const timer = setTimeout(() => (sock.close(), resolve(false)), 500);
    sock.on('error', () => (clearTimeout(timer), sock.close(), resolve(false)));
    sock.on('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve((dnsPacket.decode(msg).answers ?? []).some((a) => a.type === 'SOA'));
    });
    sock.send(dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'SOA', name: zone }] }), 53, ip);
  });
}

/** Starts NSD on `ip:53` with the zones; resolves once it answers for the first. */
export async function startNsd(opts: { dir: string; ip: string; zones: NsdZone[] }): Promise<ServiceProcess> {
  const { dir, ip } = opts;
  for (const z of opts.zones) writeFileSync(join(dir, `${z.name}.zone`), z.text);
  writeFileSync(join(dir, 'nsd.conf'), [
    'server:', `  ip-address: ${ip}@53`, '  username: ""', '  chroot: ""', `  zonesdir: "${dir}"`, `  pidfile: "${join(dir, 'nsd.pid')}"`, `  database: ""`,
    `  xfrdfile: "${join(dir, 'xfrd.state')}"`, `  zonelistfile: "${join(dir, 'zone.list')}"`, '  server-count: 1', '  verbosity: 0', '  hide-version: yes',
    '  rrl-ratelimit: 0', '  rrl-whitelist-ratelimit: 0', // NSD's response rate limit would throttle a benchmark
    'remote-control:', '  control-enable: no',
    ...opts.zones.flatMap((z) => ['zone:', `  name: ${z.name}`, `  zonefile: "${z.name}.zone"`]),
    '',
  ].join('\n'));
  const proc = new ServiceProcess({ name: 'nsd', command: '/usr/sbin/nsd', args: ['-d', '-c', join(dir, 'nsd.conf')], logFile: join(dir, 'nsd.log') });
  await waitUntil('nsd', () => answersSoa(ip, opts.zones[0]!.name), { timeoutMs: 15_000, proc, logFile: join(dir, 'nsd.log') });
  return proc;
}
