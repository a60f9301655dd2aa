// Secrets at rest: AES-256-GCM envelope encryption. Each value gets a fresh 256-bit data
// key; the data key is itself sealed under the cluster key (the key-encryption key). The
// envelope names which cluster key sealed it (a key id), so a wrong key fails loudly as
// CLUSTER_ERR_CRYPTO_WRONG_KEY, and any flipped byte fails as CLUSTER_ERR_CRYPTO_TAMPERED.
//
// Callers pass `context` (e.g. "certificates:app.example.com"): it is authenticated as
// associated data, so a sealed value copied into another row does not open there.
//
// Envelope v1, all binary:
//   [0]      version = 1
//   [1..9)   key id: first 8 bytes of SHA-256("cluster-kek" || kek)
//   [9..21)  IV for the data key
//   [21..53) data key, encrypted under the kek
//   [53..69) GCM tag of the data key
//   [69..81) IV for the payload
//   [81..97) GCM tag of the payload
//   [97..)   payload ciphertext
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { ClusterError } from '../core/errors.ts';
import type { Secret } from '../core/secret.ts';

const VERSION = 1;
const HEADER = 97;

function keyId(kek: Buffer): Buffer {
  return createHash('sha256').update('cluster-kek').update(kek).digest().subarray(0, 8);
}

function gcmSeal(key: Buffer, plaintext: Buffer, aad: Buffer): { iv: Buffer; ciphertext: Buffer; tag: Buffer } {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, ciphertext, tag: cipher.getAuthTag() };
}

function gcmOpen(key: Buffer, iv: Buffer, ciphertext: Buffer, tag: Buffer, aad: Buffer): Buffer {
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch (err) {
    throw new ClusterError('CLUSTER_ERR_CRYPTO_TAMPERED', 'sealed value failed authentication: tampered, or sealed for another context', {}, { cause: err });
  }
}

export class Sealer {
  readonly #kek: Buffer;
  readonly #keyId: Buffer;

  constructor(key: Secret<Buffer>) {
    const kek = key.reveal();
    if (kek.length !== 32) throw new Error('cluster encryption key must be 32 bytes');
    this.#kek = Buffer.from(kek);
    this.#keyId = keyId(this.#kek);
  }

  /** Hex id of the cluster key, safe to log (it reveals nothing about the key). */
  get keyId(): string {
    return this.#keyId.toString('hex');
  }

  seal(plaintext: Buffer | string, context: string): Buffer {
    const aad = Buffer.from(context, 'utf8');
    const dataKey = randomBytes(32);
    const header = Buffer.concat([Buffer.from([VERSION]), this.#keyId]);
    const wrapped = gcmSeal(this.#kek, dataKey, Buffer.concat([header, aad]));
    const body = gcmSeal(dataKey, Buffer.isBuffer(plaintext) ? plaintext : Buffer.from(plaintext, 'utf8'), Buffer.concat([header, aad]));
    dataKey.fill(0);
    return Buffer.concat([header, wrapped.iv, wrapped.ciphertext, wrapped.tag, body.iv, body.tag, body.ciphertext]);
  }

  open(envelope: Buffer, context: string): Buffer {
    if (!Buffer.isBuffer(envelope) || envelope.length < HEADER) {
      throw new ClusterError('CLUSTER_ERR_CRYPTO_MALFORMED', 'sealed value is too short', { reason: 'length' });
    }
    if (envelope[0] !== VERSION) {
      throw new ClusterError('CLUSTER_ERR_CRYPTO_MALFORMED', `sealed value has unknown version ${envelope[0]}`, { reason: 'version' });
    }
    const id = envelope.subarray(1, 9);
    if (!id.equals(this.#keyId)) {
      throw new ClusterError('CLUSTER_ERR_CRYPTO_WRONG_KEY', 'sealed value was sealed under another cluster key (check encryptionKey)', {
        keyId: id.toString('hex'),
        expectedKeyId: this.keyId,
      });
    }
    const aad = Buffer.concat([envelope.subarray(0, 9), Buffer.from(context, 'utf8')]);
    const dataKey = gcmOpen(this.#kek, envelope.subarray(9, 21), envelope.subarray(21, 53), envelope.subarray(53, 69), aad);
    try {
      return gcmOpen(dataKey, envelope.subarray(69, 81), envelope.subarray(HEADER), envelope.subarray(81, HEADER), aad);
    } finally {
      dataKey.fill(0);
    }
  }
}
