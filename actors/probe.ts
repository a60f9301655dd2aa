// The probe actor: a diagnostic kind, placed like any other, that makes failover visible.
// Each start is a fenced write (`starts + 1`, owner, epoch); messages it handles are
// recorded with their epoch; an optional heartbeat writes on a timer. Operators, `cluster
// chaos`, tests and benchmarks create probes (rows in probe_actors) to watch actors move.
import { z } from 'zod';
import type { Clock } from '../core/clock.ts';
import { isClusterError } from '../core/errors.ts';
import { sql, type DatabasePool } from '../persistence/db.ts';
import { fencedWrite } from '../persistence/epochs.ts';
import type { ProbeMsg } from '../protocol/actor-messages.ts';
import { unknownMessage, type Behavior } from './runtime.ts';

export type { ProbeMsg };

export interface ProbeState {
  handled: number;
}

export interface ProbeDeps {
  db: DatabasePool;
  nodeId: string;
  clock: Clock;
  onFenced: (id: string) => void;
}

export async function probeCatalog(db: DatabasePool): Promise<string[]> {
  return [...(await db.anyFirst(sql.type(z.object({ id: z.string() }))`SELECT id FROM probe_actors ORDER BY id`))];
}

export function probeBehavior(deps: ProbeDeps, id: string, epoch: number): Behavior<ProbeState, ProbeMsg> {
  const fence = { kind: 'probe', id, epoch };
  const guarded = async <T>(write: () => Promise<T>): Promise<T> => {
    try {
      return await write();
    } catch (err) {
      if (isClusterError(err, 'CLUSTER_ERR_ACTOR_FENCED')) deps.onFenced(id);
      throw err;
    }
  };
  // Outside the state: a restart re-runs init without `stopped`, and must not leak a timer.
  let heartbeat: { cancel(): void } | undefined;
  return {
    async init(ctx) {
      heartbeat?.cancel();
      const heartbeatMs = await guarded(() =>
        fencedWrite(deps.db, fence, (tx) =>
          tx.maybeOneFirst(sql.type(z.object({ heartbeat_ms: z.number().nullable() }))`
            UPDATE probe_actors SET starts = starts + 1, owner_node = ${deps.nodeId}, epoch = ${epoch}, started_at = now()
            WHERE id = ${id} RETURNING heartbeat_ms`),
        ),
      );
      heartbeat = heartbeatMs ? deps.clock.setInterval(() => ctx.self({ type: 'beat' }), heartbeatMs) : undefined;
      return { handled: 0 };
    },
    async receive(state, msg, ctx) {
      switch (msg.type) {
        case 'ping':
          ctx.reply({ node: deps.nodeId, epoch, handled: state.handled });
          return state;
        case 'record':
        case 'beat': {
          const msgId = msg.type === 'record' ? msg.msgId : 'beat';
          await guarded(() =>
            fencedWrite(deps.db, fence, (tx) =>
              tx.query(sql.unsafe`INSERT INTO probe_messages (probe_id, msg_id, node, epoch) VALUES (${id}, ${msgId}, ${deps.nodeId}, ${epoch})`),
            ),
          );
          ctx.reply({ node: deps.nodeId, epoch });
          return { ...state, handled: state.handled + 1 };
        }
        case 'crash':
          throw new Error(msg.reason ?? 'probe asked to crash');
        default:
          return unknownMessage(msg);
      }
    },
    stopped() {
      heartbeat?.cancel();
    },
  };
}
