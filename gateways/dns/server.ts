// The authoritative DNS gateway: UDP and TCP (length-framed) on the configured address.
// Every query is answered from the in-memory zone table. Bad packets: shorter than a header
// or responses are dropped; oversized queries, queries with bytes beyond their question and
// OPT record, and undecodable ones get FORMERR; other opcodes NOTIMP. UDP answers honour the
// client's EDNS0 payload size (512 without EDNS) and are truncated with TC set when they do
// not fit. A per-source token bucket (IPv6 counted per /56) limits answers over UDP and TCP;
// TCP also caps connections per source and in all, and stops reading while a client does
// not read its answers. Encoded answers are cached per zone generation under the decoded
// question (query-key.ts), in a cache bounded by bytes, so the hot path is a lookup. UDP is
// read and answered in batches by a small native socket (udp-batch.ts) where it is built,
// else through Node's dgram.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns';
import { lookup as lookupAddress } from 'node:dns/promises';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import dnsPacket, { type Answer, type Packet } from 'dns-packet';
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { answerQuestion, RCODE, responseFor } from './answer.ts';
import { MAX_QUERY, queryKey } from './query-key.ts';
import { ConnectionCounter, RateBuckets, sourceOf } from '../../core/rate-buckets.ts';
import { loadUdpBatch, META_ANSWER_LENGTH, META_LENGTH, sourceFromMeta, type UdpBatchModule, type UdpBatchSocket } from './udp-batch.ts';
import type { ZoneTable } from './zones.ts';

const TC = 1 << 9;
const EDNS_PAYLOAD = 1232; // what we advertise: the DNS flag day 2020 size, safe from fragmentation
const MAX_TCP_CONNECTIONS = 512;
/** TCP connections one source (an IPv4 address, an IPv6 /56) may hold at once. */
const MAX_TCP_PER_SOURCE = 16;
/** A TCP connection with no complete query for this long is closed. */
const TCP_IDLE_MS = 10_000;
/** Bytes of encoded answers (and their keys) the answer cache may hold. */
const CACHE_BYTES = 32 * 1024 * 1024;
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

export interface DnsServerOptions {
  zones: Pick<ZoneTable, 'zones' | 'generation'>;
  host: string;
  port: number;
  logger: Logger;
  /** Responses per second per source address over UDP; 0 disables. */
  rateLimit: number;
  clock: Clock;
  /** 'dgram' serves UDP through Node's dgram even where the batched socket is built (tests of both). */
  udp?: 'batched' | 'dgram';
  /** The counter of queries answered with this question type and response code (kept with each cached answer). */
  queryCounter?: (type: string, rcode: string) => { inc(): void };
}

function formErr(buf: Buffer): Buffer {
  const out = Buffer.alloc(12);
  buf.copy(out, 0, 0, 2); // id
  const opcode = (buf[2]! >> 3) & 0xf;
  out.writeUInt16BE(0x8000 | (opcode << 11) | RCODE.FORMERR, 2);
  return out;
}

/** An encoded answer and the counter its queries are counted under. */
interface CachedAnswer {
  out: Buffer;
  counter: { inc(): void };
}

const NOT_COUNTED = { inc() {} };

export class DnsServer {
  readonly #o: DnsServerOptions;
  readonly #log: Logger;
  readonly #buckets: RateBuckets;
  #udp: UdpSocket | undefined;
  #batched: { mod: UdpBatchModule; sock: UdpBatchSocket } | undefined;
  #tcp: Server | undefined;
  readonly #tcpBySource = new ConnectionCounter(MAX_TCP_PER_SOURCE);
  /** Encoded answers by query key, with the counter their queries are counted under. */
  readonly #cache = new Map<string, CachedAnswer>();
  #cacheBytes = 0;
  #cacheGeneration = -1;

  constructor(o: DnsServerOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: 'dns' });
    this.#buckets = new RateBuckets(o.rateLimit);
  }

  async listen(): Promise<void> {
    const { host, port } = this.#o;
    const native = this.#o.udp === 'dgram' ? undefined : loadUdpBatch();
    if (native && 'module' in native) await this.#listenBatched(native.module);
    else {
      if (native) this.#log.warn({ reason: native.error }, 'the batched DNS socket is not available: UDP answers go through Node dgram, at about twice the CPU per answer');
      await this.#listenDgram();
    }
    this.#tcp = createServer((sock) => this.#serveTcp(sock));
    this.#tcp.maxConnections = MAX_TCP_CONNECTIONS;
    await new Promise<void>((resolve, reject) => this.#tcp!.once('error', reject).listen(port, host, () => resolve()));
  }

  /** How UDP is served: 'batched' (udp-batch.ts) or 'dgram'; undefined before listen(). */
  get udpMode(): 'batched' | 'dgram' | undefined {
    return this.#batched ? 'batched' : this.#udp ? 'dgram' : undefined;
  }

  async #listenBatched(mod: UdpBatchModule) {
    const { host, port } = this.#o;
    const family = host.includes(':') ? 6 : 4;
    const ip = isIP(host) ? host : (await lookupAddress(host, { family })).address;
    const { SLOTS, IN_SLOT, OUT_SLOT, META } = mod;
    let sock: UdpBatchSocket | undefined = undefined;
    const onBatch = (n: number) => {
      const { in: queries, out, meta } = sock!;
      const now = this.#o.clock.now();
      try {
        for (let i = 0; i < n && i < SLOTS; i++) {
          const m = i * META;
          if (!this.#buckets.take(sourceFromMeta(meta, m), now)) continue;
          // Past a slot the query is cut off, still past MAX_QUERY: FORMERR, as over dgram.
          const length = Math.min((meta[m + META_LENGTH]! << 8) | meta[m + META_LENGTH + 1]!, IN_SLOT);
          const query = queries.subarray(i * IN_SLOT, i * IN_SLOT + length);
          const answer = this.#shared(query, 'udp');
          if (!answer || answer.length > OUT_SLOT) continue;
          const at = i * OUT_SLOT;
          answer.copy(out, at);
          out[at] = query[0]!; // the query's id
          out[at + 1] = query[1]!;
          meta[m + META_ANSWER_LENGTH] = answer.length >> 8;
          meta[m + META_ANSWER_LENGTH + 1] = answer.length & 0xff;
        }
      } catch (err) {
        // Never expected (answers are built not to throw); the answers made so far still go.
        this.#log.error({ err: (err as Error).message }, 'dns batch failed');
      }
    };
    sock = mod.open(family, ip, port, onBatch);
    this.#batched = { mod, sock };
  }

  async #listenDgram() {
    const { host, port } = this.#o;
    // Once bound, every send goes back to the address a query came from, an IP literal: the
    // default lookup would still test it with a regex and defer the send to the next tick
    // (about a tenth of the node's CPU per answer). The bind host may be a name.
    let bound = false;
    const lookup = (address: string, family: number, callback: (err: Error | null, address: string, family: number) => void) =>
      bound ? callback(null, address, family) : dnsLookup(address, family, callback);
    const udp = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', reuseAddr: false, lookup: lookup as never });
    this.#udp = udp;
    udp.on('message', (msg, rinfo) => {
      if (!this.#buckets.take(sourceOf(rinfo.address), this.#o.clock.now())) return;
      const out = this.answer(msg, 'udp');
      if (out) udp.send(out, rinfo.port, rinfo.address);
    });
    udp.on('error', (err) => this.#log.warn({ err: err.message }, 'dns udp error'));
    await new Promise<void>((resolve, reject) => udp.once('error', reject).bind(port, host, () => (udp.off('error', reject), resolve())));
    bound = true;
  }

  #serveTcp(sock: Socket) {
    sock.on('error', () => {});
    const source = this.#tcpBySource.admit(sock);
    if (source === undefined) return;
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len > MAX_QUERY) return void sock.destroy(); // no query is this large: do not buffer it
        if (buf.length < 2 + len) break;
        const query = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        if (!this.#buckets.take(source, this.#o.clock.now())) continue; // over its rate: no answer
        const out = this.answer(query, 'tcp');
        if (!out) return void sock.destroy();
        const framed = Buffer.allocUnsafe(2 + out.length);
        framed.writeUInt16BE(out.length, 0);
        out.copy(framed, 2);
        // A client that does not read its answers stops being read: memory stays bounded.
        if (!sock.write(framed)) {
          sock.pause();
          sock.once('drain', () => sock.resume());
        }
      }
    });
  }

  /** The TCP port listened on (the configured one, or the one picked for port 0). */
  get tcpPort(): number | undefined {
    const a = this.#tcp?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  /** The UDP port listened on (the configured one, or the one picked for port 0). */
  get udpPort(): number | undefined {
    return this.#batched?.sock.port ?? this.#udp?.address().port;
  }

  /** Bytes the answer cache holds (keys and encoded answers). */
  get cacheBytes(): number {
    return this.#cacheBytes;
  }

  /** The wire answer to one query, or undefined to drop it. Never throws. */
  answer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    const shared = this.#shared(msg, transport);
    if (!shared) return undefined;
    const out = Buffer.allocUnsafe(shared.length);
    shared.copy(out);
    out[0] = msg[0]!; // the query's id
    out[1] = msg[1]!;
    return out;
  }

  /**
   * The answer's bytes but for its id: a cached answer is shared by every query with the
   * same key, so the caller copies it and puts the query's id in the copy. Never throws.
   */
  #shared(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    if (msg.length < 12 || (msg[2]! & 0x80) !== 0) return undefined; // not a header, or a response
    try {
      return this.#answer(msg, transport);
    } catch (err) {
      this.#counter('invalid', 'FORMERR').inc();
      this.#log.debug({ err: (err as Error).message }, 'malformed dns query');
      return formErr(msg);
    }
  }

  #answer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer {
    const zones = this.#o.zones;
    if (this.#cacheGeneration !== zones.generation) {
      this.#cache.clear();
      this.#cacheBytes = 0;
      this.#cacheGeneration = zones.generation;
    }
    const q = queryKey(msg, transport);
    if (!q.ok) {
      this.#counter('invalid', 'FORMERR').inc();
      return formErr(msg);
    }
    const key = q.key;
    const hit = this.#cache.get(key);
    if (hit) {
      hit.counter.inc();
      return hit.out;
    }
    const query = dnsPacket.decode(msg);
    const opcode = (msg[2]! >> 3) & 0xf;
    let out: Buffer;
    if (opcode !== 0) out = this.#header(msg, RCODE.NOTIMP);
    else if (query.questions?.length !== 1 || (query.answers?.length ?? 0) > 0) out = formErr(msg);
    else {
      const opt = query.additionals?.find((a) => a.type === 'OPT') as (Answer & { udpPayloadSize?: number }) | undefined;
      const respOpt = opt ? ({ name: '.', type: 'OPT', udpPayloadSize: EDNS_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as unknown as Answer) : undefined;
      const limit = transport === 'tcp' ? 65_535 : opt ? Math.max(512, Math.min(opt.udpPayloadSize ?? 512, 4096)) : 512;
      const reply = answerQuestion(query.questions[0]!, zones.zones);
      const packet: Packet = responseFor(query, reply, respOpt);
      out = dnsPacket.encode(packet);
      if (out.length > limit) out = dnsPacket.encode({ ...packet, flags: (packet.flags ?? 0) | TC, answers: [], authorities: [], additionals: respOpt ? [respOpt] : [] });
    }
    const entry = { out, counter: this.#counter(this.#typeOf(out), RCODE_NAMES[out[3]! & 0xf] ?? 'OTHER') };
    this.#remember(key, entry);
    entry.counter.inc();
    return out;
  }

  /** Caches an answer; the oldest answers go first once the cache holds CACHE_BYTES. */
  #remember(key: string, entry: CachedAnswer) {
    this.#cache.set(key, entry);
    this.#cacheBytes += key.length + entry.out.length;
    while (this.#cacheBytes > CACHE_BYTES) {
      const [oldKey, old] = this.#cache.entries().next().value!;
      this.#cache.delete(oldKey);
      this.#cacheBytes -= oldKey.length + old.out.length;
    }
  }

  #counter(type: string, rcode: string): { inc(): void } {
    return this.#o.queryCounter?.(type, rcode) ?? NOT_COUNTED;
  }

  #typeOf(out: Buffer): string {
    // The question's type, read from the answer (we echo the question).
    if (out.readUInt16BE(4) !== 1) return 'none';
    let o = 12;
    while (o < out.length && out[o] !== 0) o += out[o]! + 1;
    return o + 3 <= out.length ? typeName(out.readUInt16BE(o + 1)) : 'none';
  }

  #header(msg: Buffer, rcode: number): Buffer {
    const out = formErr(msg);
    out.writeUInt16BE((out.readUInt16BE(2) & ~0xf) | rcode, 2);
    return out;
  }

  async close(): Promise<void> {
    this.#udp?.close();
    this.#batched?.mod.close(this.#batched.sock.handle);
    await new Promise<void>((resolve) => (this.#tcp ? this.#tcp.close(() => resolve()) : resolve()));
  }
}

const TYPE_NAMES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 255: 'ANY', 257: 'CAA' };
function typeName(n: number): string {
  return TYPE_NAMES[n] ?? 'OTHER';
}
