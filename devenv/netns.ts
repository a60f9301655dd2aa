// Separate "machines" on one host for `cluster up --netns`: each host is a network namespace
// with its own address on a bridge in ours, the way nodes, PostgreSQL and Valkey would sit on
// a switch. Clients (haproxy, the demo connector, `cluster chaos`) stay in our namespace and
// reach the hosts over the bridge. Faults are nftables rules inside a host's namespace, so a
// cut drops real packets on the path the node uses, not a simulated call.
//
// Root only (namespaces, veth, nftables). Addresses are one /24 of our choosing; `.1` is our
// end of the bridge and `.254` the checker's own address (`observer`), which every fault lets
// through so `cluster chaos` can still see inside a node it has cut off.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ClusterError } from '../core/errors.ts';

export interface NetnsHost {
  name: string;
  /** the namespace's name (`ip netns exec <ns> ...`) */
  ns: string;
  ip: string;
}

/** A fault inside one host's namespace. `share` is a percentage of packets dropped (loss). */
export type NetFault =
  | { kind: 'isolate' }
  | { kind: 'cut'; from: string[] }
  | { kind: 'one-way' }
  | { kind: 'loss'; from: string[]; share: number };

const sh = (cmd: string, args: string[], input?: string) => {
  const res = spawnSync(cmd, args, { encoding: 'utf8', input });
  if (res.status !== 0) throw new ClusterError('CLUSTER_ERR_LOCAL_SERVICE_FAILED', `netns: ${cmd} ${args.join(' ')} failed: ${(res.stderr || res.stdout || String(res.error ?? '')).trim().slice(-500)}`, { service: 'netns' });
  return res.stdout;
};

/** Throws a coded error saying why this process cannot make namespaces. */
export function requireNetns(): void {
  let reason: string | undefined;
  if (process.getuid?.() !== 0) reason = 'network namespaces need root (run as root, or without --netns)';
  for (const tool of ['ip', 'nft']) if (!reason && spawnSync(tool, ['-V']).status !== 0) reason = `\`${tool}\` is not installed (the bootstrap installs iproute2 and nftables)`;
  if (reason) throw new ClusterError('CLUSTER_ERR_NETNS_UNAVAILABLE', reason, { reason });
}

export class NetnsLab {
  /** e.g. "10.231.0": hosts are <prefix>.2-253 */
  readonly prefix: string;
  /** short tag in every name we make (bridge, veths, namespaces), unique per prefix */
  readonly tag: string;
  readonly hosts = new Map<string, NetnsHost>();
  #nextVeth = 0;

  constructor(prefix: string) {
    if (!/^10\.\d{1,3}\.\d{1,3}$/.test(prefix) || prefix.split('.').some((o) => Number(o) > 255)) throw new Error(`netns: subnet prefix ${JSON.stringify(prefix)} is not 10.X.Y`);
    this.prefix = prefix;
    const [, b, c] = prefix.split('.').map(Number) as [number, number, number];
    this.tag = ((b << 8) | c).toString(16).padStart(4, '0');
  }

  get bridge(): string {
    return `clb${this.tag}`;
  }

  /** Our end of the bridge: where hosts see clients (and haproxy) come from. */
  get gateway(): string {
    return `${this.prefix}.1`;
  }

  /** The checker's address: no fault drops its packets. */
  get observer(): string {
    return `${this.prefix}.254`;
  }

  /** Removes whatever a previous lab with this prefix left (a launcher that was SIGKILLed). */
  static clean(prefix: string): void {
    const lab = new NetnsLab(prefix);
    for (const ns of sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`cl${lab.tag}-`))) spawnSync('ip', ['netns', 'del', ns]);
    if (existsSync(`/sys/class/net/${lab.bridge}`)) spawnSync('ip', ['link', 'del', lab.bridge]);
  }

  /** Makes the bridge, with our address and the observer's on it. */
  create(): void {
    if (existsSync(`/sys/class/net/${this.bridge}`)) throw new ClusterError('CLUSTER_ERR_LOCAL_ADDRESS_IN_USE', `netns: bridge ${this.bridge} exists: another \`cluster up --netns\` uses ${this.prefix}.0/24 (choose another with --netns-subnet)`, { addresses: [`${this.prefix}.0/24`] });
    sh('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    sh('ip', ['address', 'add', `${this.gateway}/24`, 'dev', this.bridge]);
    sh('ip', ['address', 'add', `${this.observer}/24`, 'dev', this.bridge]);
    sh('ip', ['link', 'set', this.bridge, 'up']);
  }

  /** A new host on the bridge: its namespace, a veth with `ip`, loopback up. */
  addHost(name: string, octet: number): NetnsHost {
    const ns = `cl${this.tag}-${name}`;
    const ip = `${this.prefix}.${octet}`;
    const outer = `cl${this.tag}v${this.#nextVeth++}`;
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['link', 'add', outer, 'type', 'veth', 'peer', 'name', `${outer}p`]);
    sh('ip', ['link', 'set', outer, 'master', this.bridge]);
    sh('ip', ['link', 'set', outer, 'up']);
    sh('ip', ['link', 'set', `${outer}p`, 'netns', ns]);
    const inNs = (...args: string[]) => sh('ip', ['netns', 'exec', ns, ...args]);
    inNs('ip', 'link', 'set', `${outer}p`, 'name', 'eth0');
    inNs('ip', 'address', 'add', `${ip}/24`, 'dev', 'eth0');
    inNs('ip', 'link', 'set', 'eth0', 'up');
    inNs('ip', 'link', 'set', 'lo', 'up');
    const host = { name, ns, ip };
    this.hosts.set(name, host);
    this.heal(name);
    return host;
  }

  host(name: string): NetnsHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`netns: no host ${JSON.stringify(name)} (have ${[...this.hosts.keys()].join(', ')})`);
    return h;
  }

  /** Replaces the host's fault rules with `fault` (one at a time per host). */
  apply(name: string, fault: NetFault): void {
    sh('ip', ['netns', 'exec', this.host(name).ns, 'nft', '-f', '-'], faultRuleset(fault, this.observer));
  }

  /** Takes every fault off the host. */
  heal(name: string): void {
    sh('ip', ['netns', 'exec', this.host(name).ns, 'nft', '-f', '-'], faultRuleset(undefined, this.observer));
  }

  /** Deletes every namespace and the bridge (the veths go with their namespaces). */
  destroy(): void {
    for (const h of this.hosts.values()) spawnSync('ip', ['netns', 'del', h.ns]);
    this.hosts.clear();
    if (existsSync(`/sys/class/net/${this.bridge}`)) spawnSync('ip', ['link', 'del', this.bridge]);
  }
}

/**
 * A host's whole `chaos` nftables table for `fault` (none: an empty one): loopback and the
 * observer always pass, then the fault's drops. Replaces the table whether or not it existed.
 */
export function faultRuleset(fault: NetFault | undefined, observer: string): string {
  const set = (ips: string[]) => `{ ${ips.join(', ')} }`;
  let input = '';
  let output = '';
  switch (fault?.kind) {
    case undefined:
      break;
    case 'isolate':
      input = 'drop';
      output = 'drop';
      break;
    case 'one-way': // it hears everyone; nobody hears it
      output = 'drop';
      break;
    case 'cut':
      input = `ip saddr ${set(fault.from)} drop`;
      output = `ip daddr ${set(fault.from)} drop`;
      break;
    case 'loss': {
      // numgen draws 0-99: a whole share drops everything, none drops nothing.
      const share = Math.max(0, Math.min(100, Math.round(fault.share)));
      const drop = share >= 100 ? 'drop' : `numgen random mod 100 < ${share} drop`;
      if (share > 0) {
        input = `ip saddr ${set(fault.from)} ${drop}`;
        output = `ip daddr ${set(fault.from)} ${drop}`;
      }
      break;
    }
  }
  return `add table inet chaos
delete table inet chaos
table inet chaos {
  chain input {
    type filter hook input priority 0; policy accept;
    iif lo accept
    ip saddr ${observer} accept
    ${input}
  }
  chain output {
    type filter hook output priority 0; policy accept;
    oif lo accept
    ip daddr ${observer} accept
    ${output}
  }
}
`;
}
