import { spawn } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import { Secret } from '../../core/secret.ts';
import { createLogger } from '../../core/log.ts';
import { CLUSTER_ENTRY } from '../../devenv/node-process.ts';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../../persistence/migrate.ts';
import { freshDatabase, sharedServices, uniqueName } from '../harness/services.ts';
import { TEST_SECRETS } from '../harness/nodes.ts';

const logger = createLogger({ level: 'silent' });

async function query(url: string, text: string, values: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text, values);
  } finally {
    await c.end();
  }
}

/** The name of the constraint a failed statement violated. */
async function violation(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as { constraint?: string }).constraint;
  }
  return 'no violation';
}

function runMigrate(configFile: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLUSTER_ENTRY, 'migrate', '--config', configFile], { env: { PATH: process.env.PATH } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

t.test('three processes migrating at once produce one schema and one set of migration records', async (t) => {
  const url = await freshDatabase(t);
  const { valkeyUrl } = await sharedServices();
  const dir = t.testdir();
  const configFile = join(dir, 'node.json');
  writeFileSync(configFile, JSON.stringify({ ...TEST_SECRETS, postgres: { url }, valkey: { url: valkeyUrl }, peer: { bind: '127.0.0.1:7946' }, log: { level: 'warn' } }));
  const results = await Promise.all([runMigrate(configFile), runMigrate(configFile), runMigrate(configFile)]);
  t.same(results.map((r) => r.code), [0, 0, 0], results.map((r) => r.out).join('\n'));
  const known = await readMigrations();
  t.equal(results.filter((r) => /applied migrations/.test(r.out)).length, 1, 'exactly one process applied them');
  t.equal(results.filter((r) => /up to date/.test(r.out)).length, 2, 'the others found nothing to do');
  const rows = (await query(url, 'SELECT id FROM schema_migrations ORDER BY id')).rows;
  t.same(rows.map((r) => r.id), known.map((m) => m.id));
  const tables = (await query(url, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)).rows.map((r) => r.table_name);
  for (const table of ['orgs', 'users', 'org_members', 'sessions', 'api_keys', 'sites', 'site_secrets', 'resources', 'targets', 'domains', 'certificates', 'acme_accounts', 'actor_epochs', 'audit_log']) {
    t.ok(tables.includes(table), `table ${table} exists`);
  }
});

t.test('a failing migration applies nothing of its run', async (t) => {
  const url = await freshDatabase(t);
  const dir = t.testdir({ '0001_good.sql': 'CREATE TABLE good_one (id int);', '0002_bad.sql': 'CREATE TABLE good_two (id int);\nSELECT no_such_function();' });
  await t.rejects(migrate({ url: new Secret(url), connectTimeout: 2000, logger, dir }), { code: 'CLUSTER_ERR_MIGRATION_FAILED', fields: { migration: '2_bad' } });
  const tables = (await query(url, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)).rows.map((r) => r.table_name);
  t.same(tables, [], 'no table, not even schema_migrations, survives the failed run');
});

t.test('an applied migration that was edited is refused, and nothing changes', async (t) => {
  const url = await freshDatabase(t);
  const dir = t.testdir();
  cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  t.same(await migrate({ url: new Secret(url), connectTimeout: 2000, logger, dir }), (await readMigrations()).map((m) => m.id));
  t.same(await migrate({ url: new Secret(url), connectTimeout: 2000, logger, dir }), [], 'second run is a no-op');
  writeFileSync(join(dir, '0001_initial.sql'), '-- edited\nDROP TABLE orgs CASCADE;');
  await t.rejects(migrate({ url: new Secret(url), connectTimeout: 2000, logger, dir }), { code: 'CLUSTER_ERR_MIGRATION_EDITED', fields: { migration: '1_initial' } });
  t.equal((await query(url, 'SELECT count(*)::int AS n FROM orgs')).rows[0].n, 0, 'orgs table still there');
});

t.test('migration files must be named NNNN_name.sql', async (t) => {
  const dir = t.testdir({ 'create-things.sql': 'SELECT 1;' });
  await t.rejects(readMigrations(dir), { code: 'CLUSTER_ERR_MIGRATION_BAD_NAME' });
});

t.test('PostgreSQL being unreachable is a quick coded error', async (t) => {
  await t.rejects(migrate({ url: new Secret('postgres://postgres@127.0.0.1:1/x'), connectTimeout: 1000, logger }), { code: 'CLUSTER_ERR_DB_UNAVAILABLE' });
});

t.test('the schema enforces the domain: unique hostnames and ports, cascades, restricted deletes', async (t) => {
  const url = await freshDatabase(t);
  await migrate({ url: new Secret(url), connectTimeout: 2000, logger });
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  t.teardown(() => c.end());
  const org = (await c.query(`INSERT INTO orgs (slug, name) VALUES ('acme', 'Acme') RETURNING id`)).rows[0].id;
  const site = (await c.query(`INSERT INTO sites (org_id, name) VALUES ($1, 'hq') RETURNING id`, [org])).rows[0].id;
  const domain = (await c.query(`INSERT INTO domains (org_id, name) VALUES ($1, 'example.com') RETURNING id`, [org])).rows[0].id;
  const res = (await c.query(`INSERT INTO resources (org_id, name, protocol, domain_id, hostname) VALUES ($1, 'app', 'http', $2, 'app.example.com') RETURNING id`, [org, domain])).rows[0].id;
  await c.query(`INSERT INTO targets (resource_id, site_id, host, port, scheme) VALUES ($1, $2, '10.0.0.5', 8080, 'http')`, [res, site]);
  await c.query(`INSERT INTO resources (org_id, name, protocol, proxy_port) VALUES ($1, 'ssh', 'tcp', 2222)`, [org]);
  await c.query(`INSERT INTO resources (org_id, name, protocol, proxy_port) VALUES ($1, 'dns', 'udp', 2222)`, [org]);

  t.equal(await violation(c.query(`INSERT INTO resources (org_id, name, protocol, domain_id, hostname) VALUES ($1, 'dup', 'http', $2, 'app.example.com')`, [org, domain])), 'resources_hostname_key');
  t.equal(await violation(c.query(`INSERT INTO resources (org_id, name, protocol, proxy_port) VALUES ($1, 'dup', 'tcp', 2222)`, [org])), 'resources_port_key');
  t.equal(await violation(c.query(`INSERT INTO resources (org_id, name, protocol, hostname, proxy_port) VALUES ($1, 'mixed', 'tcp', 'x.example.com', 1)`, [org])), 'resources_http_shape');
  await t.rejects(c.query(`INSERT INTO targets (resource_id, site_id, host, port, scheme) VALUES ($1, $2, 'h', 70000, 'http')`, [res, site]), { code: '23514' });
  await t.rejects(c.query(`INSERT INTO users (email, password_hash) VALUES ('Upper@Example.com', 'x')`), { code: '23514' }, 'emails are stored lowercase');
  await t.rejects(c.query(`DELETE FROM domains WHERE id = $1`, [domain]), { code: '23503' }, 'a domain with resources cannot be deleted');
  await c.query(`INSERT INTO audit_log (actor_type, org_id, action) VALUES ('system', $1, 'org.created')`, [org]);

  await c.query(`DELETE FROM resources WHERE org_id = $1`, [org]);
  await c.query(`DELETE FROM orgs WHERE id = $1`, [org]);
  const left = (await c.query(`SELECT (SELECT count(*) FROM sites)::int AS sites, (SELECT count(*) FROM domains)::int AS domains, (SELECT count(*) FROM targets)::int AS targets`)).rows[0];
  t.same(left, { sites: 0, domains: 0, targets: 0 }, 'deleting an org removes its sites, domains and targets');
  t.equal((await c.query(`SELECT org_id FROM audit_log`)).rows[0].org_id, null, 'the audit log outlives the org');
  t.ok(uniqueName('x'));
});
