// Authenticated access to a node's peer port for tools, tests and benchmarks: inspect the
// node (membership view, actors) and ask an actor anywhere in the cluster through it.
import { Secret } from '../core/secret.ts';
import { peerRequest } from '../gateways/peer/request.ts';
import { PEER_PATH, type RoutesAnswer } from '../protocol/peer.ts';

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
  /** The node's id: a signed request names the node it is meant for. */
  nodeId: string;
  clusterSecret: string;
  /** PEM of the cluster's peer CA, when the peer port speaks TLS. */
  ca?: string;
  /** Source address to connect from. */
  localAddress?: string;
}

const call = (target: PeerTarget, method: 'GET' | 'POST', path: string, timeoutMs: number, body?: unknown) =>
  peerRequest({ address: target.peer, target: target.nodeId, method, path, secret: new Secret(target.clusterSecret), self: { node: 'tool', incarnation: '0' }, tls: target.ca ? { ca: target.ca } : undefined, body, timeoutMs, localAddress: target.localAddress });

export async function inspectNode(target: PeerTarget, timeoutMs = 2000): Promise<NodeView> {
  const res = await call(target, 'GET', `${PEER_PATH}/node`, timeoutMs);
  if (res.status !== 200) throw new Error(`inspect ${target.peer}: HTTP ${res.status}`);
  return res.body as NodeView;
}

/** Sends a message into the cluster through one node; returns the HTTP status and body. */
export function askVia(target: PeerTarget, kind: string, id: string, msg: unknown, timeoutMs = 5000): Promise<{ status: number; body: any }> {
  return call(target, 'POST', `${PEER_PATH}/ask`, timeoutMs + 10_000, { kind, id, msg, timeoutMs });
}

/** The TXT values the node's DNS serves at `name` (from its in-memory zones). */
export function servedTxt(target: PeerTarget, name: string, timeoutMs = 2000): Promise<{ status: number; body: any }> {
  return call(target, 'GET', `${PEER_PATH}/txt?name=${encodeURIComponent(name)}`, timeoutMs);
}

/** The node's route table summary: how many routes, which cannot be served (nodes in `dead` counted out), and the route of `id`. */
export async function routesOn(target: PeerTarget, opts: { dead?: string[]; id?: string } = {}, timeoutMs = 5000): Promise<RoutesAnswer> {
  const q = new URLSearchParams({ ...(opts.dead?.length ? { dead: opts.dead.join(',') } : {}), ...(opts.id ? { id: opts.id } : {}) });
  const res = await call(target, 'GET', `${PEER_PATH}/routes${q.size ? `?${q}` : ''}`, timeoutMs);
  if (res.status !== 200) throw new Error(`routes ${target.peer}: HTTP ${res.status}`);
  return res.body as RoutesAnswer;
}
