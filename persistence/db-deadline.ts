// A deadline on every query and transaction of the pool. PostgreSQL enforces
// statement_timeout itself, which a hung server (frozen host, stalled storage, a partition
// that drops packets without resetting) cannot do, and TCP keepalive does not notice a
// stopped process whose kernel still answers. Without this, an admin write would wait for as
// long as the server hangs; with it, it fails with CLUSTER_ERR_DB_UNAVAILABLE (503).
import type { DatabasePool } from 'slonik';
import { ClusterError } from '../core/errors.ts';

/** Pool methods that run one statement or one transaction. */
const BOUNDED = new Set<PropertyKey>(['any', 'anyFirst', 'exists', 'many', 'manyFirst', 'maybeOne', 'maybeOneFirst', 'one', 'oneFirst', 'query', 'transaction']);

export function withDeadline(pool: DatabasePool, deadlineMs: number): DatabasePool {
  return new Proxy(pool, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (!BOUNDED.has(prop) || typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const op = (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            // The operation settles whenever the server wakes: nobody waits for it any more.
            op.catch(() => {});
            reject(new ClusterError('CLUSTER_ERR_DB_UNAVAILABLE', `postgresql did not answer within ${deadlineMs} ms`, {}));
          }, deadlineMs);
        });
        return Promise.race([op, late]).finally(() => clearTimeout(timer));
      };
    },
  });
}
