// Before the cert-issuer tells the CA to check a DNS-01 challenge, every live node's DNS
// must serve the record: the CA may ask any of the zone's name servers, and one that has not
// applied the zone snapshot yet (a lagging subscription) would fail the validation, which
// Let's Encrypt counts against its failed-validation limit.
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/log.ts';

export interface PropagationWait {
  /** The nodes that must serve it (the live members, looked up each round). */
  nodes: () => string[];
  /** Whether `node` serves it now; a node that cannot be asked counts as not serving. */
  serves: (node: string) => Promise<boolean>;
  clock: Clock;
  /** Give up after this long: the CA is asked anyway, and may well reach a node that serves it. */
  timeoutMs: number;
  everyMs: number;
}

/** Resolves with the nodes that still did not serve it when time ran out (empty: all did). */
export async function waitServedEverywhere(o: PropagationWait): Promise<string[]> {
  const deadline = o.clock.now() + o.timeoutMs;
  const done = new Set<string>();
  for (;;) {
    const pending = o.nodes().filter((n) => !done.has(n));
    const results = await Promise.all(pending.map((n) => o.serves(n).catch(() => false)));
    pending.forEach((n, i) => results[i] && done.add(n));
    const left = pending.filter((n) => !done.has(n));
    if (left.length === 0 || o.clock.now() >= deadline) return left;
    await o.clock.sleep(o.everyMs);
  }
}

export interface ChallengeDeps {
  /** Sets or clears the record through the zone's dns-zone actor (which publishes the zone). */
  publish(zone: string, name: string, value: string, present: boolean): Promise<void>;
  selfId: string;
  liveIds: () => string[];
  /** TXT values served at `name` by this node's DNS, and by a peer's (over the peer link). */
  localTxt: (name: string) => string[];
  peerTxt: (node: string, name: string) => Promise<string[]>;
  clock: Clock;
  logger: Logger;
}

/** The cert-issuer's `challenge` dependency: resolves once the record is set and served everywhere it can be. */
export function challengePublisher(d: ChallengeDeps): (zone: string, name: string, value: string, present: boolean) => Promise<void> {
  return async (zone, name, value, present) => {
    await d.publish(zone, name, value, present);
    if (!present) return; // clearing is tidying up: nobody waits for it
    const lagging = await waitServedEverywhere({
      nodes: d.liveIds,
      serves: async (id) => (id === d.selfId ? d.localTxt(name) : await d.peerTxt(id, name)).includes(value),
      clock: d.clock,
      timeoutMs: 5000,
      everyMs: 50,
    });
    if (lagging.length) d.logger.warn({ name, lagging }, 'challenge record not served by every node in time; asking the CA anyway');
  };
}
