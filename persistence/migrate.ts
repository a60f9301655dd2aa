// Schema migrations: ordered `NNNN_name.sql` files in persistence/migrations, applied in
// one transaction under a PostgreSQL advisory lock (either all pending files apply or none). Nodes that start together queue on the
// lock; the first applies, the rest find nothing to do. An applied file whose checksum
// changed is refused: history is append-only.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ClusterError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import pg from 'pg';
import type { Secret } from '../core/secret.ts';
import { toDbError } from './db.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url));

/** Arbitrary constant: the advisory lock every node takes to migrate. */
const MIGRATION_LOCK = 7_219_004_513;

export interface Migration {
  id: number;
  name: string;
  checksum: string;
  body: string;
}

const appliedRow = z.object({ id: z.number(), name: z.string(), checksum: z.string() });


export async function readMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const out: Migration[] = [];
  for (const file of files) {
    const m = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!m) throw new ClusterError('CLUSTER_ERR_MIGRATION_BAD_NAME', `migration file ${file} is not named NNNN_name.sql`, { file });
    const body = await readFile(join(dir, file), 'utf8');
    out.push({ id: Number(m[1]), name: m[2]!, checksum: createHash('sha256').update(body).digest('hex'), body });
  }
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.id === out[i - 1]!.id) throw new ClusterError('CLUSTER_ERR_MIGRATION_BAD_NAME', `two migrations share number ${out[i]!.id}`, { file: out[i]!.name });
  }
  return out;
}

export interface MigrateOptions {
  url: Secret;
  connectTimeout: number;
  logger: Logger;
  dir?: string;
}

/**
 * Applies pending migrations; returns the ids it applied (empty when up to date).
 * Runs on its own node-postgres connection rather than the slonik pool: migration files are
 * trusted multi-statement SQL, which slonik (rightly) refuses for application queries.
 */
export async function migrate(opts: MigrateOptions): Promise<number[]> {
  const log = opts.logger.child({ component: 'migrate' });
  const migrations = await readMigrations(opts.dir);
  const client = new pg.Client({ connectionString: opts.url.reveal(), connectionTimeoutMillis: opts.connectTimeout });
  client.on('error', () => {}); // a dropped connection surfaces as the failing query's error
  let current: Migration | undefined;
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw new ClusterError('CLUSTER_ERR_DB_UNAVAILABLE', `postgresql unavailable: ${(err as Error).message}`, {}, { cause: err });
  }
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        id integer PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const rows = z.array(appliedRow).parse((await client.query('SELECT id, name, checksum FROM schema_migrations')).rows);
    const applied = new Map(rows.map((r) => [r.id, r]));
    const done: number[] = [];
    for (const m of migrations) {
      current = m;
      const prior = applied.get(m.id);
      if (prior) {
        if (prior.checksum !== m.checksum) {
          throw new ClusterError('CLUSTER_ERR_MIGRATION_EDITED', `migration ${m.id}_${m.name} changed after it was applied; add a new migration instead`, { migration: `${m.id}_${m.name}` });
        }
        continue;
      }
      await client.query(m.body); // no parameters: simple protocol, several statements allowed
      await client.query('INSERT INTO schema_migrations (id, name, checksum) VALUES ($1, $2, $3)', [m.id, m.name, m.checksum]);
      done.push(m.id);
      log.info({ migration: `${m.id}_${m.name}` }, 'applied migration');
    }
    await client.query('COMMIT');
    const known = new Set(migrations.map((m) => m.id));
    const newer = [...applied.keys()].filter((id) => !known.has(id));
    if (newer.length) log.warn({ newer }, 'database has migrations this node does not know (newer version running?)');
    return done;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    const mapped = toDbError(err);
    if (mapped instanceof ClusterError) throw mapped;
    const name = current ? `${current.id}_${current.name}` : '(setup)';
    throw new ClusterError('CLUSTER_ERR_MIGRATION_FAILED', `migration ${name} failed: ${(err as Error).message}`, { migration: name }, { cause: err });
  } finally {
    await client.end().catch(() => {});
  }
}
