// A stub resolver for `cluster chaos`: asks the cluster's own name servers (every node's DNS
// gateway), in rotation, moving to the next when one does not answer in time, the way a
// resolver with several NS records does. No cache: each request resolves anew, so the
// chaos report measures the cluster, not a TTL setting.
import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import packet from 'dns-packet';

export class StubResolver {
  readonly #servers: Array<{ host: string; port: number }>;
  readonly #timeoutMs: number;
  #next = 0;

  constructor(servers: string[], timeoutMs = 400) {
    this.#servers = servers.map((s) => {
      const i = s.lastIndexOf(':');
      return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
    });
    this.#timeoutMs = timeoutMs;
  }

  /** IPv4 addresses of `name`; throws when no server gives an answer. */
  async resolve4(name: string): Promise<string[]> {
    const start = this.#next++ % this.#servers.length;
    const problems: string[] = [];
    for (let k = 0; k < this.#servers.length; k++) {
      const server = this.#servers[(start + k) % this.#servers.length]!;
      try {
        return await this.#query(server, name);
      } catch (err) {
        problems.push(`${server.host}: ${(err as Error).message}`);
      }
    }
    throw new Error(`DNS: ${problems.join('; ')}`);
  }

  #query(server: { host: string; port: number }, name: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const sock = createSocket('udp4');
      const id = randomInt(0, 65536);
      const done = (err: Error | null, value?: string[]) => {
        clearTimeout(timer);
        sock.close();
        if (err) reject(err);
        else resolve(value!);
      };
      const timer = setTimeout(() => done(new Error('timeout')), this.#timeoutMs);
      sock.on('error', (err) => done(err));
      sock.on('message', (msg) => {
        let res: packet.Packet;
        try {
          res = packet.decode(msg);
        } catch {
          return; // not an answer we can read; keep waiting
        }
        if (res.id !== id) return;
        const rcode = (res as { rcode?: string }).rcode; // decoded, though not in the typings
        if (rcode !== 'NOERROR') return done(new Error(rcode ?? 'error'));
        const ips = (res.answers ?? []).flatMap((a) => (a.type === 'A' ? [String(a.data)] : []));
        if (ips.length === 0) return done(new Error('no A record'));
        done(null, ips);
      });
      sock.send(packet.encode({ type: 'query', id, flags: 0, questions: [{ type: 'A', name, class: 'IN' }] }), server.port, server.host);
    });
  }
}
