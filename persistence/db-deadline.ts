// A deadline on every query and transaction of the pool. PostgreSQL enforces
// statement_timeout itself, which a hung server (frozen host, stalled storage, a partition
// that drops packets without resetting) cannot do, and TCP keepalive does not notice a
// stopped process whose kernel still answers. Without this, an admin write would wait for as
// long as the server hangs; with it, it fails with CLUSTER_ERR_DB_UNAVAILABLE (503).
//
// A 503 must mean the write did not happen. The client cannot take back what it already
// sent, but a transaction commits only when its handler returns, so a transaction whose
// deadline passed is marked abandoned: when the server wakes and its statements finally
// answer, the handler throws instead of returning and the transaction rolls back. (The one
// window left is a deadline that passes after COMMIT itself was sent: that outcome is
// unknown to anyone until the server answers. Writes are transactions; see admin/http.ts.)
import type { DatabasePool, DatabaseTransactionConnection } from 'slonik';
import { ClusterError } from '../core/errors.ts';
import { ioDeadline } from '../core/io-deadline.ts';

/** Pool methods that run one statement or one transaction. */
const BOUNDED = new Set<PropertyKey>(['any', 'anyFirst', 'exists', 'many', 'manyFirst', 'maybeOne', 'maybeOneFirst', 'one', 'oneFirst', 'query', 'transaction']);

export function withDeadline(pool: DatabasePool, deadlineMs: number): DatabasePool {
  return new Proxy(pool, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (!BOUNDED.has(prop) || typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        let abandoned = false;
        if (prop === 'transaction' && typeof args[0] === 'function') {
          const handler = args[0] as (tx: DatabaseTransactionConnection) => Promise<unknown>;
          args[0] = async (tx: DatabaseTransactionConnection) => {
            const result = await handler(tx);
            if (abandoned) throw new ClusterError('CLUSTER_ERR_DB_UNAVAILABLE', 'transaction abandoned after its deadline; rolled back', {});
            return result;
          };
        }
        const op = (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        // Not a plain timer: after a stall of this process the answer may be waiting unread.
        const deadline = ioDeadline(deadlineMs);
        const late = deadline.expired.then(() => {
          abandoned = true;
          op.catch(() => {}); // it settles (rolled back) whenever the server wakes; nobody waits for it
          throw new ClusterError('CLUSTER_ERR_DB_UNAVAILABLE', `postgresql did not answer within ${deadlineMs} ms`, {});
        });
        return Promise.race([op, late]).finally(() => deadline.cancel());
      };
    },
  });
}
