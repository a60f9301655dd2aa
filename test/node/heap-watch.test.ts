// A node's V8 heap limit: the launchers' default (bin/cluster and the test/bench launcher give
// the same), and the warning when what is live after a full collection nears the limit.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { HeapWatch, NODE_HEAP_MB, defaultHeapArgs } from '../../core/heap-watch.ts';

t.test('bin/cluster and the launcher give a node the same heap limit, unless NODE_OPTIONS names one', async (t) => {
  t.same(defaultHeapArgs(undefined), [`--max-old-space-size=${NODE_HEAP_MB}`]);
  t.same(defaultHeapArgs('--enable-source-maps'), [`--max-old-space-size=${NODE_HEAP_MB}`]);
  t.same(defaultHeapArgs('--enable-source-maps --max-old-space-size=4096'), [], "the operator's own limit stands");

  // bin/cluster run with a `node` that prints the arguments it was given.
  const dir = mkdtempSync(join(tmpdir(), 'heap-args-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'node'), '#!/bin/sh\necho "$@"\n');
  chmodSync(join(dir, 'node'), 0o755);
  const cli = fileURLToPath(new URL('../../bin/cluster', import.meta.url));
  const argsOf = (nodeOptions?: string) => execFileSync('sh', [cli, 'node', '--config', 'x.yaml'], { env: { PATH: `${dir}:/usr/bin:/bin`, ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) }, encoding: 'utf8' }).trim().split(' ');
  const plain = argsOf();
  t.equal(plain[0], `--max-old-space-size=${NODE_HEAP_MB}`, 'the same limit as the launcher');
  t.match(plain.slice(1).join(' '), /cluster\.mjs node --config x\.yaml$/);
  t.notOk(argsOf('--max-old-space-size=3000').some((a) => a.startsWith('--max-old-space-size')), 'none over NODE_OPTIONS');
});

t.test('a live heap near the limit after a full collection is said, at most once per interval', async (t) => {
  const warned: unknown[] = [];
  let used = 300;
  let now = 0;
  const watch = new HeapWatch({ log: { info: () => {}, warn: (o: unknown) => warned.push(o) } as never, stats: () => ({ used: used * 1048576, limit: 1024 * 1048576 }), now: () => now, everyMs: 60_000 });
  t.notOk(watch.afterFullCollection(), '29 % live: nothing to say');
  t.equal(Math.round(watch.liveRatio * 100), 29, 'the ratio is exported');
  used = 800;
  t.ok(watch.afterFullCollection(), '78 % live: said');
  t.same(warned, [{ liveMb: 800, limitMb: 1024 }]);
  now = 30_000;
  t.notOk(watch.afterFullCollection(), 'not again within the interval');
  now = 61_000;
  t.ok(watch.afterFullCollection(), 'again after it');
  t.equal(warned.length, 2);
});

t.test("a real full collection is what makes the watch read the heap", async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let reads = 0;
  const watch = new HeapWatch({ log: { info: () => {}, warn: () => {} } as never, stats: () => (reads++, { used: 1, limit: 4 }) }).start();
  t.teardown(() => watch.stop());
  const startReads = reads; // start() read the limit once
  gc();
  await new Promise((r) => setTimeout(r, 200)); // performance entries are delivered asynchronously
  t.ok(reads > startReads, 'read after the collection');
  t.equal(watch.liveRatio, 0.25);
});
