// WireGuard keys: Curve25519 (X25519) key pairs, written as WireGuard writes them (base64 of
// the 32 raw bytes) and, for the UAPI, as hex. Node's crypto makes and derives them, so no
// `wg genkey` process is needed.
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';

export interface KeyPair {
  /** base64, 44 characters */
  privateKey: string;
  publicKey: string;
}

const B64_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** True for a well-formed WireGuard key: base64 of exactly 32 bytes, canonical padding. */
export function isWireGuardKey(key: unknown): key is string {
  return typeof key === 'string' && B64_KEY.test(key) && Buffer.from(key, 'base64').length === 32;
}

const fromJwk = (b64url: string) => Buffer.from(b64url, 'base64url').toString('base64');

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey: fromJwk(privateKey.export({ format: 'jwk' }).d!), publicKey: fromJwk(publicKey.export({ format: 'jwk' }).x!) };
}

// PKCS#8 wrapping of a raw X25519 private key (RFC 8410): a fixed prefix, then the 32 bytes.
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** The public key of a base64 private key. */
export function publicKeyOf(privateKey: string): string {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, Buffer.from(privateKey, 'base64')]), format: 'der', type: 'pkcs8' });
  return fromJwk(key.export({ format: 'jwk' }).x!);
}

export const keyToHex = (b64: string) => Buffer.from(b64, 'base64').toString('hex');
export const hexToKey = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
