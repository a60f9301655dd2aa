// Resource session cookies: the claims (protocol/access.ts) as JSON with an HMAC under a key
// derived from the cluster secret. Any node verifies one from memory (no Valkey or PostgreSQL
// round trip on the hot path); a revocation reaches every node as the session id (see
// revocations.ts). Anything tampered, foreign, oversized or malformed verifies to undefined.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Secret } from '../../core/secret.ts';
import { SessionClaimsSchema, type SessionClaims } from '../../protocol/access.ts';

/** Longer than any cookie this cluster writes (a few hundred bytes); longer ones are not parsed. */
export const MAX_SESSION_COOKIE = 2048;

/** Cookies verified lately, so the hot path skips the MAC and the parse (claims are immutable). */
const VERIFIED_CACHE = 10_000;

export class SessionSigner {
  readonly #key: Buffer;
  #verified = new Map<string, SessionClaims>();

  constructor(clusterSecret: Secret) {
    // A key of its own: a signature made for another purpose (connector tokens) never verifies here.
    this.#key = createHmac('sha256', clusterSecret.reveal()).update('resource-session-key').digest();
  }

  sign(claims: SessionClaims): string {
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${body}.${this.#mac(body).toString('base64url')}`;
  }

  verify(value: string | undefined): SessionClaims | undefined {
    if (!value || value.length > MAX_SESSION_COOKIE) return undefined;
    const known = this.#verified.get(value);
    if (known) return known;
    const claims = this.#verify(value);
    if (claims) {
      if (this.#verified.size >= VERIFIED_CACHE) this.#verified = new Map();
      this.#verified.set(value, claims);
    }
    return claims;
  }

  #verify(value: string): SessionClaims | undefined {
    const dot = value.indexOf('.');
    if (dot <= 0) return undefined;
    const body = value.slice(0, dot);
    const got = Buffer.from(value.slice(dot + 1), 'base64url');
    const want = this.#mac(body);
    if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined;
    try {
      const parsed = SessionClaimsSchema.safeParse(JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  #mac(body: string): Buffer {
    return createHmac('sha256', this.#key).update(body).digest();
  }
}
