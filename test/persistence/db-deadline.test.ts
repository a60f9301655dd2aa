// A write refused with 503 because PostgreSQL did not answer in time must not commit later,
// when the server wakes: its transaction is abandoned and rolls back.
import t from 'tap';
import type { DatabasePool } from 'slonik';
import { withDeadline } from '../../persistence/db-deadline.ts';
import { until } from '../harness/until.ts';

/** A pool whose server answers after `lagMs`, committing a transaction whose handler returned. */
function laggingPool(lagMs: number) {
  const committed: string[] = [];
  const rolledBack: string[] = [];
  const answer = <T>(v: T) => new Promise<T>((r) => setTimeout(() => r(v), lagMs));
  const pool = {
    query: () => answer({ rows: [] }),
    async transaction<T>(handler: (tx: { query: (name: string) => Promise<void> }) => Promise<T>): Promise<T> {
      const pending: string[] = [];
      const tx = { query: async (name: string) => void (await answer(pending.push(name))) };
      try {
        const result = await handler(tx);
        committed.push(...pending);
        return result;
      } catch (err) {
        rolledBack.push(...pending);
        throw err;
      }
    },
  };
  return { pool: pool as unknown as DatabasePool, committed, rolledBack };
}

t.test('a transaction past its deadline answers CLUSTER_ERR_DB_UNAVAILABLE and rolls back when the server wakes', async (t) => {
  const { pool, committed, rolledBack } = laggingPool(80);
  const bounded = withDeadline(pool, 20);
  await t.rejects(bounded.transaction(async (tx) => void (await (tx as any).query('insert site'))), { code: 'CLUSTER_ERR_DB_UNAVAILABLE', status: 503 });
  await until(() => committed.length + rolledBack.length > 0, 2000, 'the lagging server to answer');
  t.same(committed, [], 'nothing committed behind the 503');
  t.same(rolledBack, ['insert site'], 'the statement that was waiting was rolled back');
});

t.test('a transaction within its deadline commits as usual', async (t) => {
  const { pool, committed } = laggingPool(5);
  const bounded = withDeadline(pool, 1000);
  t.equal(await bounded.transaction(async (tx) => ((await (tx as any).query('insert site')), 'ok')), 'ok');
  t.same(committed, ['insert site']);
});
