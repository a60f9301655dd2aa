// Hashes for credentials at rest.
// - Passwords (low entropy, chosen by people): scrypt, memory-hard, parameters stored with
//   the hash so they can be raised later without breaking old hashes.
// - Generated tokens (session tokens, API keys, connector secrets: >= 256 random bits):
//   SHA-256 is enough, since brute force over 2^256 is not a threat, and it lets a lookup
//   by hash use an index.
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const scrypt = (password: string, salt: Buffer, keylen: number, opts: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));

/** OWASP's scrypt baseline: N=2^15, r=8, p=1 (32 MiB, tens of milliseconds). */
const DEFAULT = { N: 32768, r: 8, p: 1 };
const KEYLEN = 32;

export async function hashPassword(password: string, params = DEFAULT): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password.normalize('NFKC'), salt, KEYLEN, { ...params, maxmem: 256 * params.N * params.r });
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Constant-time check; false (never an exception) for a malformed stored hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0) || N > 2 ** 20 || r > 32 || p > 16) return false;
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (expected.length !== KEYLEN) return false;
  const key = await scrypt(password.normalize('NFKC'), salt, KEYLEN, { N, r, p, maxmem: 256 * N * r });
  return timingSafeEqual(key, expected);
}

let dummyHash: Promise<string> | undefined;

/**
 * Checks a password against a stored hash or, when there is none (an unknown account, a
 * method not set), against a throw-away one: both answers take as long, so timing tells
 * nothing about which accounts exist.
 */
export async function verifyPasswordOrDummy(password: string, stored: string | null | undefined): Promise<boolean> {
  dummyHash ??= hashPassword(generateToken());
  const ok = await verifyPassword(password, stored ?? (await dummyHash));
  return ok && stored !== null && stored !== undefined;
}

/**
 * A new random token (URL-safe, 256 bits). Never starting with '-': tokens are typed on
 * command lines (`cluster-connector --secret TOKEN`), where a leading dash reads as an option
 * and the connector refused to start (1 secret in 64; seen as sites that never came online).
 */
export function generateToken(bytes = 32): string {
  for (;;) {
    const token = randomBytes(bytes).toString('base64url');
    if (!token.startsWith('-')) return token;
  }
}

/** Hash of a generated token, for storage and indexed lookup. */
export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
