// Shared PostgreSQL and Valkey for a test run. `npm test` starts them once and passes
// their URLs in TEST_POSTGRES_URL / TEST_VALKEY_URL; a test file run on its own starts
// its own. Either way every test isolates itself: its own database, its own key prefix.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import pg from 'pg';
import { Redis } from 'ioredis';
import rootTest from 'tap';
import { startLocalServices, type LocalServices } from '../../devenv/services.ts';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { createDb, type DatabasePool } from '../../persistence/db.ts';
import { migrate } from '../../persistence/migrate.ts';
import { Valkey } from '../../persistence/valkey.ts';

let own: Promise<LocalServices> | undefined;

export async function sharedServices(): Promise<{ postgresUrl: string; valkeyUrl: string }> {
  if (process.env.TEST_POSTGRES_URL && process.env.TEST_VALKEY_URL) {
    return { postgresUrl: process.env.TEST_POSTGRES_URL, valkeyUrl: process.env.TEST_VALKEY_URL };
  }
  own ??= startLocalServices({}).then((s) => {
    // The running servers keep the event loop alive, so stop them when tap's root ends.
    rootTest.teardown(() => s.stop());
    return s;
  });
  const s = await own;
  return { postgresUrl: s.postgres!.url, valkeyUrl: s.valkey!.url };
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A new empty database for one test, dropped (with its connections) at teardown. */
export async function freshDatabase(t: Teardown): Promise<string> {
  const { postgresUrl } = await sharedServices();
  const name = uniqueName('t');
  const admin = new pg.Client({ connectionString: postgresUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: postgresUrl });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(postgresUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A fresh database with the schema migrated and a pool on it (ended at teardown). */
export async function freshMigratedDb(t: Teardown, poolSize = 2): Promise<{ url: string; db: DatabasePool }> {
  const url = await freshDatabase(t);
  const logger = createLogger({ level: 'silent' });
  await migrate({ url: new Secret(url), connectTimeout: 2000, logger });
  const db = await createDb({ url: new Secret(url), poolSize, connectTimeout: 2000, statementTimeout: 5000, logger });
  t.teardown(() => db.end());
  return { url, db };
}

/** A cluster name (key prefix) no other test uses; its keys are deleted at teardown. */
export async function freshClusterName(t: Teardown): Promise<{ clusterName: string; valkeyUrl: string }> {
  const { valkeyUrl } = await sharedServices();
  const clusterName = uniqueName('t').replace(/_/g, '-');
  t.teardown(async () => {
    const r = new Redis(valkeyUrl, { lazyConnect: true });
    await r.connect();
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${clusterName}:*`, 'COUNT', 500);
      if (keys.length) await r.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    r.disconnect();
  });
  return { clusterName, valkeyUrl };
}

/** Our Valkey client, ready, on a fresh cluster name (closed and cleaned up at teardown). */
export async function freshValkey(t: Teardown): Promise<Valkey> {
  const { clusterName, valkeyUrl } = await freshClusterName(t);
  const v = new Valkey({ url: new Secret(valkeyUrl), clusterName, connectTimeout: 1000, commandTimeout: 1000, logger: createLogger({ level: 'silent' }) });
  v.connect();
  t.teardown(() => v.close());
  if (v.state !== 'ready') await once(v.cmd, 'ready');
  return v;
}
