// Fencing epochs in PostgreSQL. Every claim of an actor takes the next epoch for it
// (`UPDATE ... SET epoch = epoch + 1 RETURNING epoch`); every durable write an actor makes
// runs in a transaction that first locks the actor's epoch row (FOR SHARE) and is refused
// when the epoch moved on. A claim's UPDATE waits for such a write to commit, so a stale
// owner's write either lands before the new owner exists or not at all.
import { z } from 'zod';
import { ClusterError } from '../core/errors.ts';
import { sql, withDb, type DatabasePool } from './db.ts';
import type { DatabaseTransactionConnection } from 'slonik';

export type { DatabaseTransactionConnection };

const epochRow = z.object({ actor_id: z.string(), epoch: z.coerce.number() });

/** Takes a new epoch for each id (one statement for the batch). */
export async function claimEpochs(pool: DatabasePool, kind: string, ids: readonly string[], owner: { node: string; incarnation: number }): Promise<Map<string, number>> {
  if (ids.length === 0) return new Map();
  const rows = await withDb(() =>
    pool.any(sql.type(epochRow)`
      INSERT INTO actor_epochs (kind, actor_id, epoch, owner_node, owner_incarnation, claimed_at)
      SELECT ${kind}, id, 1, ${owner.node}, ${owner.incarnation}, now() FROM unnest(${sql.array(ids as string[], 'text')}) AS id
      ON CONFLICT (kind, actor_id) DO UPDATE
        SET epoch = actor_epochs.epoch + 1, owner_node = EXCLUDED.owner_node,
            owner_incarnation = EXCLUDED.owner_incarnation, claimed_at = now()
      RETURNING actor_id, epoch`),
  );
  return new Map(rows.map((r) => [r.actor_id, r.epoch]));
}

export interface Fence {
  kind: string;
  id: string;
  epoch: number;
}

/**
 * Runs `write` in a transaction that holds the actor's epoch row; throws
 * CLUSTER_ERR_ACTOR_FENCED (and writes nothing) when `fence.epoch` is no longer current.
 */
export async function fencedWrite<T>(pool: DatabasePool, fence: Fence, write: (tx: DatabaseTransactionConnection) => Promise<T>): Promise<T> {
  return withDb(() =>
    pool.transaction(async (tx) => {
      const current = await tx.maybeOneFirst(sql.type(z.object({ epoch: z.coerce.number() }))`
        SELECT epoch FROM actor_epochs WHERE kind = ${fence.kind} AND actor_id = ${fence.id} FOR SHARE`);
      if (current !== fence.epoch) throw fencedError(fence, current);
      return write(tx);
    }),
  );
}

function fencedError(fence: Fence, current: number | null): ClusterError {
  return new ClusterError('CLUSTER_ERR_ACTOR_FENCED', `stale epoch ${fence.epoch} for ${fence.kind}/${fence.id} (current ${current ?? 'none'})`, {
    kind: fence.kind,
    id: fence.id,
    epoch: fence.epoch,
    currentEpoch: current ?? null,
  });
}

/**
 * The fence as the WHERE condition of one statement: the statement holds the actor's epoch
 * row (FOR SHARE) as `fencedWrite`'s transaction does, and touches nothing once the epoch
 * moved on. One round trip where the transaction took four (BEGIN, the check, the write,
 * COMMIT): a zone's serial moves this way, once per zone per batch of moves in a storm.
 */
export function fenceHolds(fence: Fence) {
  return sql.fragment`EXISTS (SELECT 1 FROM actor_epochs WHERE kind = ${fence.kind} AND actor_id = ${fence.id} AND epoch = ${fence.epoch} FOR SHARE)`;
}

/** After a statement under `fenceHolds` touched nothing: CLUSTER_ERR_ACTOR_FENCED if the epoch moved on, else undefined (the row itself was not there). */
export async function fenceMoved(pool: DatabasePool, fence: Fence): Promise<ClusterError | undefined> {
  const current = await withDb(() => pool.maybeOneFirst(sql.type(z.object({ epoch: z.coerce.number() }))`SELECT epoch FROM actor_epochs WHERE kind = ${fence.kind} AND actor_id = ${fence.id}`));
  return current === fence.epoch ? undefined : fencedError(fence, current);
}

/**
 * Records `now()` as last seen for the sites whose epoch is still the one given, in one
 * statement: each site's epoch row is held (FOR SHARE) as `fencedWrite` holds it, and a site
 * whose epoch moved on (another node took it) is left alone. One statement per node and
 * interval, where a transaction per site grew with the number of sites.
 */
export async function markSitesSeen(pool: DatabasePool, sites: ReadonlyMap<string, number>): Promise<number> {
  if (sites.size === 0) return 0;
  const ids = [...sites.keys()];
  const epochs = ids.map((id) => sites.get(id)!);
  return withDb(async () =>
    (await pool.query(sql.unsafe`
      WITH current AS (
        SELECT e.actor_id FROM actor_epochs e
        JOIN unnest(${sql.array(ids, 'text')}::text[], ${sql.array(epochs, 'int8')}::int8[]) AS f(id, epoch) ON e.actor_id = f.id AND e.epoch = f.epoch
        WHERE e.kind = 'site' FOR SHARE OF e)
      UPDATE sites SET last_seen_at = now() WHERE id::text IN (SELECT actor_id FROM current)`)).rowCount,
  );
}
