// One node's ownership registry on real Valkey and PostgreSQL, as the claim tests need it:
// its own Valkey client, a membership lease and the registry, all stopped at teardown.
import { once } from 'node:events';
import { systemClock } from '../../core/clock.ts';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import type { DatabasePool } from '../../persistence/db.ts';
import { Valkey } from '../../persistence/valkey.ts';
import { Membership } from '../../supervisors/membership.ts';
import { OwnershipRegistry } from '../../supervisors/ownership.ts';

const logger = createLogger({ level: 'silent' });

export async function ownershipNode(t: { teardown(f: () => Promise<void>): void }, o: { id: string; db: DatabasePool; clusterName: string; valkeyUrl: string }) {
  const valkey = new Valkey({ url: new Secret(o.valkeyUrl), clusterName: o.clusterName, connectTimeout: 1000, commandTimeout: 1000, logger });
  valkey.connect();
  await once(valkey.cmd, 'ready');
  const membership = new Membership({ valkey, clock: systemClock, logger, nodeId: o.id, admin: '127.0.0.1:1', peer: '127.0.0.1:1', ttlMs: 3000, renewEveryMs: 1000 });
  await membership.start();
  const ownership = new OwnershipRegistry({ valkey, db: o.db, membership });
  await ownership.start();
  t.teardown(async () => {
    await ownership.stop();
    await membership.leave();
    await valkey.close();
  });
  return { id: o.id, ownership, valkey, membership };
}
