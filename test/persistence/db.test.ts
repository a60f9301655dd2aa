import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { z } from 'zod';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { LocalPostgres } from '../../devenv/postgres.ts';
import { createDb, sql, withDb } from '../../persistence/db.ts';
import { PostgresProbe } from '../../persistence/db-probe.ts';
import { migrate } from '../../persistence/migrate.ts';
import { claimEpochs, markSitesSeen } from '../../persistence/epochs.ts';
import { freshDatabase } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });
const ROOT = join(import.meta.dirname, '../..');

t.test('rows are checked by their zod parser; a mismatching row is an error, not bad data', async (t) => {
  const url = await freshDatabase(t);
  await migrate({ url: new Secret(url), connectTimeout: 2000, logger });
  const pool = await createDb({ url: new Secret(url), poolSize: 2, connectTimeout: 2000, statementTimeout: 2000, logger });
  t.teardown(() => pool.end());
  const org = z.object({ id: z.string().uuid(), slug: z.string(), version: z.number().int() });
  const row = await pool.one(sql.type(org)`INSERT INTO orgs (slug, name) VALUES ('acme', 'Acme') RETURNING id, slug, version`);
  t.equal(row.slug, 'acme');
  t.equal(row.version, 1);
  await t.rejects(pool.one(sql.type(z.object({ slug: z.number() }))`SELECT slug FROM orgs`), { message: /do not conform with the schema/ });
});

t.test('a transaction leaves async hooks off: the data plane in the same process does not pay for them', async (t) => {
  const url = await freshDatabase(t);
  await migrate({ url: new Secret(url), connectTimeout: 2000, logger });
  // In a process of its own: the test runner turns async hooks on in this one.
  const script = `
    import { executionAsyncId } from 'node:async_hooks';
    import { createLogger } from '${join(ROOT, 'core/log.ts')}';
    import { Secret } from '${join(ROOT, 'core/secret.ts')}';
    import { createDb, sql } from '${join(ROOT, 'persistence/db.ts')}';
    const pool = await createDb({ url: new Secret(process.env.DB_URL), poolSize: 2, connectTimeout: 2000, statementTimeout: 2000, logger: createLogger({ level: 'silent' }) });
    const slug = await pool.transaction(async (tx) => {
      await tx.query(sql.unsafe\`INSERT INTO orgs (slug, name) VALUES ('tx', 'Tx')\`);
      return tx.oneFirst(sql.unsafe\`SELECT slug FROM orgs WHERE slug = 'tx'\`);
    });
    const rolledBack = await pool.transaction(async (tx) => {
      await tx.query(sql.unsafe\`INSERT INTO orgs (slug, name) VALUES ('rolled', 'Back')\`);
      throw new Error('abort');
    }).catch((err) => err.message);
    const left = await pool.oneFirst(sql.unsafe\`SELECT count(*)::int FROM orgs WHERE slug = 'rolled'\`);
    // With async hooks on (after any AsyncLocalStorage run), a promise's callback runs under an id of its own.
    const idInThen = await Promise.resolve().then(() => executionAsyncId());
    await pool.end();
    console.log(JSON.stringify({ slug, rolledBack, left, idInThen }));
  `;
  const out = execFileSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], { cwd: ROOT, env: { ...process.env, DB_URL: url }, encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').at(-1)!);
  t.equal(r.slug, 'tx', 'the transaction ran and committed');
  t.same([r.rolledBack, r.left], ['abort', 0], 'a failed transaction still rolls back');
  t.equal(r.idInThen, 0, 'promises are not tracked by async hooks after transactions');
});

t.test('a pooled query costs its own statement alone: nothing is sent when the connection goes back', async (t) => {
  const url = await freshDatabase(t);
  await migrate({ url: new Secret(url), connectTimeout: 2000, logger });
  const pool = await createDb({ url: new Secret(url), poolSize: 1, connectTimeout: 2000, statementTimeout: 2000, logger });
  t.teardown(() => pool.end());
  const pid = await pool.oneFirst(sql.type(z.object({ pid: z.number() }))`SELECT pg_backend_pid() AS pid /* marker */`);
  await pool.transaction(async (tx) => tx.query(sql.unsafe`SELECT 1 /* in a transaction */`));
  // The pool's one connection, as PostgreSQL last saw it: its last statement, then idle.
  const other = await createDb({ url: new Secret(url), poolSize: 1, connectTimeout: 2000, statementTimeout: 2000, logger });
  t.teardown(() => other.end());
  const last = await other.oneFirst(sql.type(z.object({ query: z.string() }))`SELECT query FROM pg_stat_activity WHERE pid = ${pid}`);
  t.equal(last, 'COMMIT', "the transaction's COMMIT was the last statement (no DISCARD ALL after it)");
});

t.test('an unreachable PostgreSQL gives CLUSTER_ERR_DB_UNAVAILABLE quickly, and the pool recovers when it returns', async (t) => {
  // A hang would end this test at tap's timeout; how fast it fails is bench territory.
  await t.rejects(createDb({ url: new Secret('postgres://postgres@127.0.0.1:1/none'), poolSize: 1, connectTimeout: 500, statementTimeout: 1000, logger }), { code: 'CLUSTER_ERR_DB_UNAVAILABLE', status: 503 });

  const server = await LocalPostgres.start({ dir: t.testdir(), fast: true });
  t.teardown(() => server.stop());
  const pool = await createDb({ url: new Secret(server.url), poolSize: 2, connectTimeout: 500, statementTimeout: 1000, logger });
  t.teardown(() => pool.end());
  t.equal(await withDb(() => pool.oneFirst(sql.unsafe`SELECT 1`)), 1);
  await server.pause();
  const probe = new PostgresProbe(new Secret(server.url));
  t.teardown(() => probe.close());
  await t.rejects(withDb(() => pool.oneFirst(sql.unsafe`SELECT 1`)), { code: 'CLUSTER_ERR_DB_UNAVAILABLE' });
  t.equal(await probe.ping(300), false, 'readiness: down');
  await server.resume();
  t.equal(await withDb(() => pool.oneFirst(sql.unsafe`SELECT 1`)), 1, 'same pool works again');
  t.equal(await probe.ping(1000), true, 'readiness: up again');
});

t.test('readiness tells a busy pool from PostgreSQL down: its probe has a connection of its own', async (t) => {
  const url = await freshDatabase(t);
  const pool = await createDb({ url: new Secret(url), poolSize: 1, connectTimeout: 2000, statementTimeout: 5000, logger });
  t.teardown(() => pool.end());
  const probe = new PostgresProbe(new Secret(url));
  t.teardown(() => probe.close());
  const busy = pool.query(sql.unsafe`SELECT pg_sleep(1.5)`); // every pooled connection taken
  await new Promise((r) => setTimeout(r, 100));
  t.equal(await probe.ping(500), true, 'up while the pool is busy');
  t.equal(await probe.ping(500), true, 'and again, on the same connection');
  await busy;
});

t.test('a statement past the statement timeout is cancelled with a coded error', async (t) => {
  const url = await freshDatabase(t);
  const pool = await createDb({ url: new Secret(url), poolSize: 1, connectTimeout: 2000, statementTimeout: 200, logger });
  t.teardown(() => pool.end());
  await t.rejects(withDb(() => pool.query(sql.unsafe`SELECT pg_sleep(2)`)), { code: 'CLUSTER_ERR_DB_QUERY_FAILED' });
});

t.test("last-seen is written in one statement for the sites whose epoch is current, never for a site another node took", async (t) => {
  const url = await freshDatabase(t);
  await migrate({ url: new Secret(url), connectTimeout: 2000, logger });
  const pool = await createDb({ url: new Secret(url), poolSize: 2, connectTimeout: 2000, statementTimeout: 2000, logger });
  t.teardown(() => pool.end());
  const orgId = await pool.oneFirst(sql.type(z.object({ id: z.string() }))`INSERT INTO orgs (slug, name) VALUES ('acme', 'Acme') RETURNING id`);
  const ids = [...(await pool.anyFirst(sql.type(z.object({ id: z.string() }))`INSERT INTO sites (org_id, name) SELECT ${orgId}, 's' || n FROM generate_series(1, 3) n RETURNING id`))];
  const here = await claimEpochs(pool, 'site', ids, { node: 'node-1', incarnation: 1 });
  await claimEpochs(pool, 'site', [ids[2]!], { node: 'node-2', incarnation: 1 }); // the third moved on
  const written = await markSitesSeen(pool, new Map(ids.map((id) => [id, here.get(id)!])));
  t.equal(written, 2, 'two sites written');
  const seen = await pool.any(sql.type(z.object({ id: z.string(), seen: z.boolean() }))`SELECT id, last_seen_at IS NOT NULL AS seen FROM sites`);
  t.same(Object.fromEntries(seen.map((r) => [r.id, r.seen])), { [ids[0]!]: true, [ids[1]!]: true, [ids[2]!]: false }, 'the stale epoch wrote nothing');
  t.equal(await markSitesSeen(pool, new Map()), 0, 'nothing online: no statement');
});
