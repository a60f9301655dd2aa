// The batched UDP socket of native/udp_batch.c (recvmmsg, one JavaScript call per batch,
// sendmmsg), loaded once. Where it is not built (no compiler when the bootstrap ran, not
// Linux), `loadUdpBatch` says why and the DNS gateway uses Node's dgram instead, at about
// twice the CPU per answer.
import { createRequire } from 'node:module';
import { prefix56 } from '../../core/rate-buckets.ts';

export interface UdpBatchSocket {
  handle: unknown;
  /** Query i in bytes [i * IN_SLOT, i * IN_SLOT + length). */
  in: Buffer;
  /** The answer to query i goes in bytes [i * OUT_SLOT, ...); its length in meta. */
  out: Buffer;
  /** Per query, META bytes: length, source port, family, answer length, source address. */
  meta: Buffer;
  /** The bound port (the one picked when 0 was asked for). */
  port: number;
}

export interface UdpBatchModule {
  open(family: 4 | 6, ip: string, port: number, onBatch: (n: number) => void): UdpBatchSocket;
  close(handle: unknown): void;
  SLOTS: number;
  IN_SLOT: number;
  OUT_SLOT: number;
  META: number;
}

/** Offsets in a query's META record. */
export const META_LENGTH = 0;
export const META_PORT = 2;
export const META_FAMILY = 4;
export const META_ANSWER_LENGTH = 6;
export const META_ADDRESS = 8;
/** A query's length when it did not fit its slot. */
export const OVERSIZED = 0xffff;

/** Where `npm run native:build` puts the module. */
const BUILT = './native/build/Release/udp_batch.node';

let loaded: { module: UdpBatchModule } | { error: string } | undefined;

export function loadUdpBatch(): { module: UdpBatchModule } | { error: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') return (loaded = { error: `recvmmsg/sendmmsg are Linux system calls (this is ${process.platform})` });
  try {
    loaded = { module: createRequire(import.meta.url)(BUILT) as UdpBatchModule };
  } catch (err) {
    loaded = { error: `${(err as Error).message.split('\n')[0]} (build it with: npm run native:build)` };
  }
  return loaded;
}

/**
 * The rate limiter's key for a source read from META (what `sourceOf` makes of the address's
 * text): IPv4 dotted, an IPv4-mapped IPv6 address as its IPv4, other IPv6 as its /56.
 */
export function sourceFromMeta(meta: Buffer, at: number): string {
  const a = at + META_ADDRESS;
  if (meta[at + META_FAMILY] === 4) return `${meta[a]}.${meta[a + 1]}.${meta[a + 2]}.${meta[a + 3]}`;
  let mapped = meta[a + 10] === 0xff && meta[a + 11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) mapped = meta[a + i] === 0;
  if (mapped) return `${meta[a + 12]}.${meta[a + 13]}.${meta[a + 14]}.${meta[a + 15]}`;
  const group = (i: number) => meta.readUInt16BE(a + 2 * i);
  return prefix56(group(0), group(1), group(2), group(3));
}
