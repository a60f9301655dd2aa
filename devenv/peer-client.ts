// Authenticated access to a node's peer port for tools, tests and benchmarks: inspect the
// node (membership view, actors) and ask an actor anywhere in the cluster through it.
import { Secret } from '../core/secret.ts';
import { authHeaders, PEER_PATH } from '../protocol/peer.ts';

export interface NodeView {
  node: string;
  incarnation: string;
  membership: string;
  leaseHealthy: boolean;
  live: string[];
  actors: Array<{ kind: string; id: string; epoch: number }>;
}

export interface PeerTarget {
  /** host:port of the node's peer listener */
  peer: string;
  clusterSecret: string;
}

const headers = (target: PeerTarget) => authHeaders(new Secret(target.clusterSecret), { node: 'tool', incarnation: '0' });

export async function inspectNode(target: PeerTarget, timeoutMs = 2000): Promise<NodeView> {
  const res = await fetch(`http://${target.peer}${PEER_PATH}/node`, { headers: headers(target), signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) throw new Error(`inspect ${target.peer}: HTTP ${res.status}`);
  return (await res.json()) as NodeView;
}

/** Sends a message into the cluster through one node; returns the HTTP status and body. */
export async function askVia(target: PeerTarget, kind: string, id: string, msg: unknown, timeoutMs = 5000): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://${target.peer}${PEER_PATH}/ask`, {
    method: 'POST',
    headers: { ...headers(target), 'content-type': 'application/json' },
    body: JSON.stringify({ kind, id, msg, timeoutMs }),
    signal: AbortSignal.timeout(timeoutMs + 10_000),
  });
  return { status: res.status, body: await res.json() };
}

/** The TXT values the node's DNS serves at `name` (from its in-memory zones). */
export async function servedTxt(target: PeerTarget, name: string, timeoutMs = 2000): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://${target.peer}${PEER_PATH}/txt?name=${encodeURIComponent(name)}`, { headers: headers(target), signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.json() };
}
