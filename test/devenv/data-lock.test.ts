// `cluster up`'s data-directory lock: refusing a running launcher is tested end to end in
// up.test.ts; here, what it takes over and what it leaves behind.
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { LOCK_FILE, lockDataDir } from '../../devenv/data-lock.ts';

t.test('a lock left by a launcher that is gone, or by a pid now used by another program, is taken over', async (t) => {
  for (const [what, pid] of [['a dead pid', 2 ** 22 + 12345], ['a live process that is not cluster up', 1], ['garbage', 'not a pid']] as const) {
    const dir = t.testdir();
    writeFileSync(join(dir, LOCK_FILE), `${pid}\n`);
    const lock = lockDataDir(dir);
    t.equal(readFileSync(join(dir, LOCK_FILE), 'utf8').trim(), String(process.pid), `${what}: the lock is ours`);
    lock.release();
    t.same(readdirSync(dir), [], `${what}: released, nothing left in the directory`);
  }
});

t.test('release never throws, and never removes a lock that another launcher took over', async (t) => {
  const dir = t.testdir();
  const lock = lockDataDir(dir);
  writeFileSync(join(dir, LOCK_FILE), '424242\n'); // taken over (we were thought gone)
  lock.release();
  t.ok(existsSync(join(dir, LOCK_FILE)), 'the other launcher keeps its lock');
  rmSync(join(dir, LOCK_FILE));
  t.doesNotThrow(() => lock.release(), 'a lock file removed by hand is no error on the way out');
});
