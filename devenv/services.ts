// The local services manager: PostgreSQL, Valkey and Pebble for tests and `npm start`.
// `startLocalServices` starts what is asked, waits for each to be ready, and returns a
// handle whose `stop()` tears everything down in reverse order. If start-up fails half way,
// what did start is stopped before the error is thrown.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalPebble } from './pebble.ts';
import { LocalPostgres } from './postgres.ts';
import { LocalValkey } from './valkey.ts';

export { LocalPebble, LocalPostgres, LocalValkey };

export interface LocalServicesOptions {
  /** Where data lives; default a fresh temp directory removed on stop. */
  dataDir?: string;
  postgres?: boolean;
  valkey?: boolean;
  pebble?: boolean;
  /** DNS server Pebble checks DNS-01 challenges against (default: its own challenge server). */
  pebbleDnsServer?: string;
  /** Keep data across restarts (`npm start`); tests leave this off for speed. */
  persistent?: boolean;
  /** `cluster up --netns`: PostgreSQL and Valkey each in a namespace of their own, Pebble on the bridge. */
  netns?: {
    postgres: { ns: string; host: string; clients: string };
    valkey: { ns: string; host: string };
    pebbleHost: string;
  };
  /** Called as each service starts and as it becomes ready (progress display). */
  onStarting?: (service: string) => void;
  onReady?: (service: string, ms: number) => void;
}

export interface LocalServices {
  dataDir: string;
  postgres?: LocalPostgres;
  valkey?: LocalValkey;
  pebble?: LocalPebble;
  stop(): Promise<void>;
}

export async function startLocalServices(opts: LocalServicesOptions = {}): Promise<LocalServices> {
  const temp = !opts.dataDir;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'cluster-services-'));
  if (temp) chmodSync(dataDir, 0o755); // the postgres user must be able to reach its directory
  const started: Array<{ stop(): Promise<void> }> = [];
  const services: LocalServices = {
    dataDir,
    async stop() {
      for (const s of started.reverse()) await s.stop().catch(() => {});
      started.length = 0;
      if (temp) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  const timed = async <T>(name: string, start: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    opts.onStarting?.(name);
    const s = await start();
    opts.onReady?.(name, Date.now() - t0);
    return s;
  };
  try {
    const jobs: Promise<unknown>[] = [];
    if (opts.postgres ?? true) {
      jobs.push(timed('postgres', () => LocalPostgres.start({ dir: join(dataDir, 'postgres'), fast: !opts.persistent, ...(opts.netns ? { port: 5432, host: opts.netns.postgres.host, netns: opts.netns.postgres.ns, clients: opts.netns.postgres.clients } : {}) })).then((s) => {
        services.postgres = s;
        started.push(s);
      }));
    }
    if (opts.valkey ?? true) {
      jobs.push(timed('valkey', () => LocalValkey.start({ dir: join(dataDir, 'valkey'), persist: opts.persistent, ...(opts.netns ? { port: 6379, host: opts.netns.valkey.host, netns: opts.netns.valkey.ns } : {}) })).then((s) => {
        services.valkey = s;
        started.push(s);
      }));
    }
    if (opts.pebble ?? false) {
      jobs.push(timed('pebble', () => LocalPebble.start({ dir: join(dataDir, 'pebble'), dnsServer: opts.pebbleDnsServer, keepPorts: opts.persistent, host: opts.netns?.pebbleHost })).then((s) => {
        services.pebble = s;
        started.push(s);
      }));
    }
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return services;
  } catch (err) {
    await services.stop();
    throw err;
  }
}
