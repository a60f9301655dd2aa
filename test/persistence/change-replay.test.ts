// Change announcements lost on the way (Valkey unreachable when a write is announced, or a
// node's subscription reconnecting) are found again in the audit log, including a write
// whose transaction commits after later ones were read.
import pg from 'pg';
import t from 'tap';
import { SimulatedClock } from '../harness/clock.ts';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { createDb } from '../../persistence/db.ts';
import { migrate } from '../../persistence/migrate.ts';
import { ChangeReplay } from '../../supervisors/change-replay.ts';
import { freshDatabase } from '../harness/services.ts';

const logger = createLogger({ level: 'silent' });

t.test('each missed change is applied once, even one committed after later changes were read', async (t) => {
  const url = await freshDatabase(t);
  await migrate({ url: new Secret(url), connectTimeout: 2000, logger });
  const pool = await createDb({ url: new Secret(url), poolSize: 2, connectTimeout: 2000, statementTimeout: 2000, logger });
  t.teardown(() => pool.end());
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  t.teardown(() => db.end());
  const change = (c: pg.Client, kind: string) => c.query(`INSERT INTO audit_log (actor_type, action, target_type, target_id) VALUES ('system', $1, $2, 'x') RETURNING id`, [`${kind}.updated`, kind]);
  await change(db, 'org'); // before the node started: its actors read it when they started

  // Ticks are driven by hand below; the clock only says how old an id is.
  const clock = new SimulatedClock();
  const applied: string[][] = [];
  const replay = new ChangeReplay({ db: pool, clock, logger, everyMs: 10_000, lookBackMs: 60_000, apply: (kinds) => applied.push([...kinds].sort()) });
  await replay.start();

  await change(db, 'target');
  await change(db, 'site');
  await replay.tick();
  t.same(applied, [['site', 'target']], 'the changes since start, once per kind');

  // A transaction takes its audit id now but commits after a later one was read.
  const slow = new pg.Client({ connectionString: url });
  await slow.connect();
  t.teardown(() => slow.end());
  await slow.query('BEGIN');
  await change(slow, 'domain');
  await change(db, 'resource');
  clock.t += 10_000;
  await replay.tick();
  t.same(applied.at(-1), ['resource'], 'the committed one is applied');
  await slow.query('COMMIT');
  clock.t += 10_000;
  await replay.tick();
  t.same(applied.at(-1), ['domain'], 'the late one is applied when it commits, though its id is below one already read');
  const count = applied.length;
  clock.t += 10_000;
  await replay.tick();
  clock.t += 70_000;
  await replay.tick();
  t.equal(applied.length, count, 'nothing is applied twice, before or after the look-back moves on');
  await change(db, 'site');
  clock.t += 10_000;
  await replay.tick();
  t.same(applied.at(-1), ['site'], 'and changes keep being found after it moved');

  // The usual case: the announcement arrived, so the read has nothing to apply.
  const heard = (await change(db, 'target')).rows[0].id;
  replay.announced(Number(heard));
  const before = applied.length;
  clock.t += 10_000;
  await replay.tick();
  t.equal(applied.length, before, 'a change whose announcement arrived is not applied again');
});
