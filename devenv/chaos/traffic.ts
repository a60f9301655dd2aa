// The steady load `cluster chaos` drives while it breaks nodes:
//  - resource requests: resolve the hostname through the cluster's DNS, then HTTPS to the
//    address it names (a fresh connection each time, certificate verified), one every
//    `intervalMs`, several in flight;
//  - admin writes: site creations through the load balancer, from a few concurrent writers,
//    keeping the ids the API acknowledged so they can be looked up in PostgreSQL afterwards.
import { request } from 'node:https';
import type { StubResolver } from './resolver.ts';

export interface RequestSample {
  /** ms since the run began */
  at: number;
  ms: number;
  ok: boolean;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface TrafficOptions {
  hostname: string;
  /** PEM of the CA the resource's certificate must chain to */
  ca: string;
  /** What a correct answer's body looks like */
  expect: RegExp;
  resolver: StubResolver;
  t0: number;
  intervalMs: number;
  timeoutMs: number;
  maxInFlight: number;
}

export class ResourceTraffic {
  readonly samples: RequestSample[] = [];
  readonly #o: TrafficOptions;
  #running = false;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(opts: TrafficOptions) {
    this.#o = opts;
  }

  start() {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        if (this.#inFlight.size < this.#o.maxInFlight) {
          const p = this.#one().finally(() => this.#inFlight.delete(p));
          this.#inFlight.add(p);
        }
        await sleep(this.#o.intervalMs);
      }
    })();
  }

  async stop() {
    this.#running = false;
    await this.#loop;
    await Promise.all(this.#inFlight);
  }

  async #one(): Promise<void> {
    const start = Date.now();
    const at = start - this.#o.t0;
    try {
      const [ip] = await this.#o.resolver.resolve4(this.#o.hostname);
      const body = await this.#get(ip!, Math.max(100, this.#o.timeoutMs - (Date.now() - start)));
      const ok = this.#o.expect.test(body);
      this.samples.push({ at, ms: Date.now() - start, ok, ...(ok ? {} : { error: `unexpected answer: ${body.slice(0, 80)}` }) });
    } catch (err) {
      this.samples.push({ at, ms: Date.now() - start, ok: false, error: (err as Error).message });
    }
  }

  #get(ip: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      // A deadline for the whole exchange. The request's own `timeout` option is an idle
      // timer that does not run during the TLS handshake, so a frozen node would hold a
      // request until it thaws and the report would count a seconds-long stall as a success.
      const deadline = setTimeout(() => req.destroy(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
      const req = request({ host: ip, port: 443, path: '/', servername: this.#o.hostname, headers: { host: this.#o.hostname }, ca: this.#o.ca, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode} from ${ip}`))));
        res.on('error', reject);
      });
      req.on('error', (err) => reject(new Error(`${(err as NodeJS.ErrnoException).code ?? err.message} at ${ip}`)));
      req.on('close', () => clearTimeout(deadline));
      req.end();
    });
  }
}

export interface WriteOptions {
  /** the admin API behind the load balancer */
  base: string;
  cookie: string;
  orgId: string;
  writers: number;
  intervalMs: number;
  timeoutMs: number;
}

export class AdminWrites {
  /** Site ids the API acknowledged with 201. */
  readonly acked: string[] = [];
  readonly failures = new Map<string, number>();
  readonly #o: WriteOptions;
  #running = false;
  #loops: Promise<void>[] = [];
  #n = 0;

  constructor(opts: WriteOptions) {
    this.#o = opts;
  }

  get failed(): number {
    return [...this.failures.values()].reduce((a, b) => a + b, 0);
  }

  start() {
    this.#running = true;
    this.#loops = Array.from({ length: this.#o.writers }, () => this.#writer());
  }

  async stop() {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  async #writer() {
    while (this.#running) {
      const started = Date.now();
      const name = `chaos write ${this.#n++}`;
      try {
        const res = await fetch(`${this.#o.base}/api/v1/orgs/${this.#o.orgId}/sites`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', cookie: this.#o.cookie },
          body: JSON.stringify({ name }),
          signal: AbortSignal.timeout(this.#o.timeoutMs),
        });
        const body = (await res.json().catch(() => ({}))) as { id?: string; code?: string };
        if (res.status === 201 && body.id) this.acked.push(body.id);
        else this.#fail(`HTTP ${res.status}${body.code ? ` ${body.code}` : ''}`);
      } catch (err) {
        this.#fail((err as Error).name === 'TimeoutError' ? 'timeout' : ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message);
      }
      await sleep(Math.max(0, this.#o.intervalMs - (Date.now() - started)));
    }
  }

  #fail(reason: string) {
    this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
  }
}
