// The node-to-node protocol: authentication with the cluster secret and the message
// schemas. A peer proves it knows the secret with an HMAC over its identity and a fresh
// timestamp (replays are limited to a short window); anything else is refused.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Secret } from '../core/secret.ts';

export const PEER_PATH = '/peer/v1';
const MAX_SKEW_MS = 30_000;

export interface PeerIdentity {
  node: string;
  incarnation: string;
}

function sign(secret: Secret, id: PeerIdentity, time: string): string {
  return createHmac('sha256', secret.reveal()).update(`${id.node}\n${id.incarnation}\n${time}`).digest('hex');
}

export function authHeaders(secret: Secret, id: PeerIdentity, now = Date.now()): Record<string, string> {
  const time = String(now);
  return { 'x-cluster-node': id.node, 'x-cluster-incarnation': id.incarnation, 'x-cluster-time': time, 'x-cluster-signature': sign(secret, id, time) };
}

/** Verifies peer headers; returns the identity or a reason for refusal. */
export function verifyAuth(secret: Secret, headers: Record<string, string | string[] | undefined>, now = Date.now()): PeerIdentity | { refused: string } {
  const h = (k: string) => (typeof headers[k] === 'string' ? (headers[k] as string) : undefined);
  const node = h('x-cluster-node');
  const incarnation = h('x-cluster-incarnation');
  const time = h('x-cluster-time');
  const sig = h('x-cluster-signature');
  if (!node || !incarnation || !time || !sig) return { refused: 'missing authentication headers' };
  if (!/^\d{1,16}$/.test(time) || Math.abs(now - Number(time)) > MAX_SKEW_MS) return { refused: 'stale or invalid timestamp' };
  const want = Buffer.from(sign(secret, { node, incarnation }, time), 'hex');
  const got = Buffer.from(sig, 'hex');
  if (got.length !== want.length || !timingSafeEqual(got, want)) return { refused: 'bad signature' };
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

/** Body of POST /peer/v1/ask: deliver a message to an actor wherever it lives (tools, tests). */
/** GET /peer/v1/txt?name=: a DNS name, as the DNS gateway would be asked it. */
export const TxtQuery = z.object({ name: z.string().min(1).max(253).regex(/^[A-Za-z0-9_.-]+$/, 'a DNS name') }).strict();

export const AskRequest = z.object({ kind: name, id: name, msg: z.unknown(), timeoutMs: z.number().int().positive().max(120_000).default(5000) }).strict();
