// The node-to-node protocol: authentication with the cluster secret and the message
// schemas. A peer proves it knows the secret with an HMAC over its identity, a fresh
// timestamp, a random nonce, and the request itself (method, path, the node it is meant
// for): a captured request cannot be replayed (the nonce is remembered for as long as the
// timestamp is accepted), sent to another node, or turned into another request.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Secret } from '../core/secret.ts';

export const PEER_PATH = '/peer/v1';
const MAX_SKEW_MS = 30_000;

export interface PeerIdentity {
  node: string;
  incarnation: string;
}

/** What a signature covers besides who sends it. */
export interface SignedRequest {
  method: string;
  /** Path and query, exactly as requested. */
  path: string;
  /** The node id the request is meant for. */
  target: string;
}

function sign(secret: Secret, id: PeerIdentity, time: string, nonce: string, req: SignedRequest): string {
  return createHmac('sha256', secret.reveal())
    .update([id.node, id.incarnation, time, nonce, req.method.toUpperCase(), req.path, req.target].join('\n'))
    .digest('hex');
}

export function authHeaders(secret: Secret, id: PeerIdentity, req: SignedRequest, now = Date.now()): Record<string, string> {
  const time = String(now);
  const nonce = randomBytes(16).toString('hex');
  return {
    'x-cluster-node': id.node,
    'x-cluster-incarnation': id.incarnation,
    'x-cluster-time': time,
    'x-cluster-nonce': nonce,
    'x-cluster-target': req.target,
    'x-cluster-signature': sign(secret, id, time, nonce, req),
  };
}

/**
 * Nonces seen within the accepted clock skew: a second use is a replay. Entries older than
 * the window are useless (their timestamp is refused anyway) and are dropped as time passes.
 */
export class ReplayCache {
  readonly #seen = new Map<string, number>();

  /** True the first time a nonce is presented (and remembers it); false for a replay. */
  fresh(nonce: string, now: number): boolean {
    for (const [n, at] of this.#seen) {
      if (now - at <= 2 * MAX_SKEW_MS) break; // insertion order: the rest are newer
      this.#seen.delete(n);
    }
    if (this.#seen.has(nonce)) return false;
    this.#seen.set(nonce, now);
    return true;
  }

  get size(): number {
    return this.#seen.size;
  }
}

/** Verifies peer headers for a request to this node; returns the identity or a reason for refusal. */
export function verifyAuth(
  secret: Secret,
  headers: Record<string, string | string[] | undefined>,
  req: { method: string; path: string; self: string },
  replay: ReplayCache,
  now = Date.now(),
): PeerIdentity | { refused: string } {
  const h = (k: string) => (typeof headers[k] === 'string' ? (headers[k] as string) : undefined);
  const node = h('x-cluster-node');
  const incarnation = h('x-cluster-incarnation');
  const time = h('x-cluster-time');
  const nonce = h('x-cluster-nonce');
  const target = h('x-cluster-target');
  const sig = h('x-cluster-signature');
  if (!node || !incarnation || !time || !nonce || !target || !sig) return { refused: 'missing authentication headers' };
  if (!/^\d{1,16}$/.test(time) || Math.abs(now - Number(time)) > MAX_SKEW_MS) return { refused: 'stale or invalid timestamp' };
  if (!/^[0-9a-f]{32}$/.test(nonce)) return { refused: 'invalid nonce' };
  if (target !== req.self) return { refused: 'meant for another node' };
  const want = Buffer.from(sign(secret, { node, incarnation }, time, nonce, { method: req.method, path: req.path, target }), 'hex');
  const got = Buffer.from(sig, 'hex');
  if (got.length !== want.length || !timingSafeEqual(got, want)) return { refused: 'bad signature' };
  if (!replay.fresh(nonce, now)) return { refused: 'replayed request' };
  return { node, incarnation };
}

const name = z.string().min(1).max(255);

export const PeerMessage = z.discriminatedUnion('t', [
  z.object({ t: z.literal('ask'), rid: z.number().int().nonnegative(), kind: name, id: name, msg: z.unknown(), timeoutMs: z.number().int().positive().max(120_000) }),
  z.object({
    t: z.literal('reply'),
    rid: z.number().int().nonnegative(),
    ok: z.boolean(),
    value: z.unknown().optional(),
    code: z.string().optional(),
    message: z.string().optional(),
    /** The error's typed fields (ErrorFields of its code). */
    fields: z.record(z.unknown()).optional(),
  }),
]);
export type PeerMessage = z.infer<typeof PeerMessage>;

/** GET /peer/v1/txt?name=: a DNS name, as the DNS gateway would be asked it. */
export const TxtQuery = z.object({ name: z.string().min(1).max(253).regex(/^[A-Za-z0-9_.-]+$/, 'a DNS name') }).strict();

/** Body of POST /peer/v1/ask: deliver a message to an actor wherever it lives (tools, tests). */

export const AskRequest = z.object({ kind: name, id: name, msg: z.unknown(), timeoutMs: z.number().int().positive().max(120_000).default(5000) }).strict();

/** GET /peer/v1/stats: a node's actor counts by kind. */
export const StatsAnswer = z.object({ actors: z.record(z.number().int().nonnegative()) });
/** GET /peer/v1/txt: the TXT values a node's DNS serves at a name. */
export const TxtAnswer = z.object({ values: z.array(z.string()) });

/** GET /peer/v1/heard?node=: an indirect probe, how long ago this node heard a peer. */
export const HeardQuery = z.object({ node: z.string().min(1).max(100) }).strict();
export const HeardAnswer = z.object({ agoMs: z.number().nonnegative().nullable() });

/**
 * GET /peer/v1/routes?dead=a,b&id=: the node's route table as its ingress sees it (tools,
 * benchmarks): how many routes, the enabled ones with no target whose site's tunnel is on a
 * live node (nodes in `dead` count as not live: the caller may know before the lease runs
 * out); or, with `id`, that resource's route alone (the unrouted scan walks every route: a
 * benchmark polling one route in a loop spent a survivor's CPU on it).
 */
export const RoutesQuery = z.object({ dead: z.string().max(2000).optional(), id: z.string().min(1).max(100).optional() }).strict();
export const RoutesAnswer = z.object({ total: z.number().int().nonnegative(), unrouted: z.array(z.string()).optional(), route: z.unknown().optional() });
export type RoutesAnswer = z.infer<typeof RoutesAnswer>;

