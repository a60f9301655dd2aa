// Loads by id asked for in the same turn of the event loop go to PostgreSQL as one statement.
// After a node dies its survivors respawn hundreds of site and resource actors at once, each
// loading its row: one round trip per actor queued behind a pool of ten connections (and
// starved the readiness probe with them), where a statement per batch does the same work.
import { setImmediate } from 'node:timers';

/** Rows by id; an id missing from the answer resolves to undefined. */
export type FetchMany<V> = (ids: string[]) => Promise<Map<string, V>>;

/** A loader of single ids over `fetchMany`, at most `maxBatch` ids per statement. */
export function batchLoader<V>(fetchMany: FetchMany<V>, maxBatch = 500): (id: string) => Promise<V | undefined> {
  let waiting = new Map<string, Array<{ resolve: (v: V | undefined) => void; reject: (e: unknown) => void }>>();
  const flush = () => {
    const batch = waiting;
    waiting = new Map();
    const ids = [...batch.keys()];
    for (let i = 0; i < ids.length; i += maxBatch) {
      const chunk = ids.slice(i, i + maxBatch);
      fetchMany(chunk).then(
        (rows) => {
          for (const id of chunk) for (const w of batch.get(id)!) w.resolve(rows.get(id));
        },
        (err) => {
          for (const id of chunk) for (const w of batch.get(id)!) w.reject(err);
        },
      );
    }
  };
  return (id) =>
    new Promise((resolve, reject) => {
      if (waiting.size === 0) setImmediate(flush);
      const ws = waiting.get(id);
      if (ws) ws.push({ resolve, reject });
      else waiting.set(id, [{ resolve, reject }]);
    });
}

/** batchLoader per database pool (a process may hold several, as the tests do): `load(pool, id)`. */
export function pooledLoader<P extends object, V>(fetchMany: (pool: P, ids: string[]) => Promise<Map<string, V>>): (pool: P, id: string) => Promise<V | undefined> {
  const loaders = new WeakMap<P, (id: string) => Promise<V | undefined>>();
  return (pool, id) => {
    let load = loaders.get(pool);
    if (!load) loaders.set(pool, (load = batchLoader((ids) => fetchMany(pool, ids))));
    return load(id);
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The ids that can name a uuid row: anything else matches nothing, and must not fail the cast of a whole batch. */
export const uuidsOnly = (ids: string[]): string[] => ids.filter((id) => UUID.test(id));
