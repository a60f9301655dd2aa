// Connector tokens: after proving its site id and secret once, a connector gets a short-lived
// token, an HMAC (cluster secret) over the site id, the site's secret generation and expiry.
// Any node verifies it without a database round trip, so a connector may reconnect to any
// node; the site actor refuses a token of an older generation (the secret was rotated since).
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Secret } from '../../core/secret.ts';

export function issueConnectorToken(secret: Secret, siteId: string, generation: number, ttlMs: number, now = Date.now()): string {
  const body = `${siteId}.${generation}.${now + ttlMs}`;
  const sig = createHmac('sha256', secret.reveal()).update(`connector\n${body}`).digest('base64url');
  return `${Buffer.from(body).toString('base64url')}.${sig}`;
}

/** The site id and secret generation of a valid, unexpired token; undefined otherwise. */
export function verifyConnectorToken(secret: Secret, token: string, now = Date.now()): { siteId: string; generation: number } | undefined {
  const [bodyB64, sig] = token.split('.');
  if (!bodyB64 || !sig || token.length > 512) return undefined;
  const body = Buffer.from(bodyB64, 'base64url').toString('utf8');
  const want = createHmac('sha256', secret.reveal()).update(`connector\n${body}`).digest();
  const got = Buffer.from(sig, 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined;
  const m = /^([0-9a-f-]{36})\.(\d{1,9})\.(\d+)$/.exec(body);
  if (!m || Number(m[3]) < now) return undefined;
  return { siteId: m[1]!, generation: Number(m[2]) };
}
