// Rendezvous (highest random weight) hashing: each (node, key) pair gets a score and the
// key lives on the live node with the highest score. When a node leaves, only its keys
// move; when one joins, it takes about 1/N of the keys from the others.
import { createHash } from 'node:crypto';

function score(nodeId: string, key: string): bigint {
  return createHash('sha256').update(nodeId).update('\0').update(key).digest().readBigUInt64BE(0);
}

/** The node that should own `key` among `nodes` (undefined when there is none). */
export function placeOn(key: string, nodes: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1n;
  for (const node of nodes) {
    const s = score(node, key);
    if (s > bestScore || (s === bestScore && best !== undefined && node < best)) {
      best = node;
      bestScore = s;
    }
  }
  return best;
}

export { actorKey } from '../protocol/actor-messages.ts';
