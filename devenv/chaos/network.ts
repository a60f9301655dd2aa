// Network faults for `cluster chaos` against a `cluster up --netns` cluster: each is an
// nftables rule set inside one node's namespace, put there and taken off through the
// launcher's control socket (devenv/netns.ts writes the rules).
//
// And the DNS watch: while a fault lasts, how long the nodes clients can still reach go on
// naming a node they cannot.
import { controlCall, type ControlRequest } from '../control.ts';
import type { StubResolver } from './resolver.ts';

export const NETWORK_MODES = ['isolate', 'cut-valkey', 'cut-postgres', 'cut-peers', 'one-way', 'lossy-link'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

export const isNetworkMode = (m: string): m is NetworkMode => (NETWORK_MODES as readonly string[]).includes(m);

export interface AppliedFault {
  /** For the timeline. */
  what: string;
  /** Clients cannot reach the node while it lasts (DNS must stop naming it). */
  unreachable: boolean;
  /** The node cannot renew its lease while it lasts: it must fence itself (if the fault outlasts the lease). */
  losesLease: boolean;
}

/** Puts `mode` on `node`'s namespace. `rand` draws the other end of a lossy link and its share. */
export async function applyFault(socket: string, mode: NetworkMode, node: string, nodeIds: string[], rand: () => number): Promise<AppliedFault> {
  const others = nodeIds.filter((n) => n !== node);
  const fault = (body: Omit<Extract<ControlRequest, { op: 'net-fault' }>, 'op' | 'host'>) => controlCall(socket, { op: 'net-fault', host: node, ...body });
  switch (mode) {
    case 'isolate':
      await fault({ fault: 'isolate' });
      return { what: `isolate ${node} (every packet in and out dropped)`, unreachable: true, losesLease: true };
    case 'cut-valkey':
      await fault({ fault: 'cut', from: ['valkey'] });
      return { what: `cut ${node} from Valkey`, unreachable: false, losesLease: true };
    case 'cut-postgres':
      await fault({ fault: 'cut', from: ['postgres'] });
      return { what: `cut ${node} from PostgreSQL`, unreachable: false, losesLease: false };
    case 'cut-peers':
      await fault({ fault: 'cut', from: others });
      return { what: `cut ${node} from its peers (clients, Valkey and PostgreSQL still reach it)`, unreachable: false, losesLease: false };
    case 'one-way':
      await fault({ fault: 'one-way' });
      return { what: `one-way: ${node} hears everyone, nobody hears it`, unreachable: true, losesLease: true };
    case 'lossy-link': {
      const peer = others[Math.floor(rand() * others.length)]!;
      const share = 10 + Math.round(rand() * 40);
      await fault({ fault: 'loss', from: [peer], share });
      return { what: `lose ${share}% of packets between ${node} and ${peer}`, unreachable: false, losesLease: false };
    }
  }
}

export const healFault = (socket: string, node: string) => controlCall(socket, { op: 'net-heal', host: node });

/**
 * Asks every node's DNS for `hostname` every `everyMs` while a fault lasts, and times how long
 * the nodes other than the faulted one keep naming its address: null when none named it at
 * the start (nothing to follow), otherwise from the fault until the first round in which no
 * reachable node named it.
 */
export class DnsFollow {
  readonly #servers: Array<{ id: string; resolver: StubResolver }>;
  readonly #hostname: string;
  readonly #everyMs: number;

  constructor(servers: Array<{ id: string; resolver: StubResolver }>, hostname: string, everyMs = 100) {
    this.#servers = servers;
    this.#hostname = hostname;
    this.#everyMs = everyMs;
  }

  /** Runs until `done` resolves; answers the follow time in ms (null: not named to begin with; -1: still named at the end). */
  async follow(node: string, address: string, startedAt: number, done: Promise<unknown>): Promise<number | null> {
    let over = false;
    void done.then(() => (over = true));
    let first = true;
    while (!over) {
      const round = Date.now();
      const answers = await Promise.all(this.#servers.filter((s) => s.id !== node).map((s) => s.resolver.resolve4(this.#hostname).catch(() => [] as string[])));
      const named = answers.some((ips) => ips.includes(address));
      if (first && !named) return null;
      first = false;
      if (!named) return round - startedAt;
      await new Promise((r) => setTimeout(r, Math.max(0, this.#everyMs - (Date.now() - round))));
    }
    return -1;
  }
}
