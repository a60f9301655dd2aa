#!/usr/bin/env node
// `npm test`: type-check, start the shared test services (PostgreSQL, Valkey), run every
// test file with tap, and print the closing count line `N passed, N failed[, N skipped]`
// from tap's per-file results (.tap/test-results). A count is one top-level test of a
// file (a `t.test(...)`), plus one for the type-check; a file that crashes counts as failed.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser } from 'tap-parser';
import { register } from 'tsx/esm/api';

register();
const { startLocalServices } = await import('../devenv/services.ts');

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (name) => join(root, 'node_modules', '.bin', name);
const counts = { pass: 0, fail: 0, skip: 0 };
const failures = [];

function typecheck() {
  process.stdout.write('# type-check (tsc --noEmit, the node code and the dashboard)\n');
  const res = spawnSync(bin('tsc'), ['--noEmit', '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  const ui = spawnSync(bin('tsc'), ['--noEmit', '-p', join('ui', 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
  if (res.status === 0 && ui.status === 0) counts.pass++;
  else {
    counts.fail++;
    failures.push('type-check (tsc --noEmit)');
  }
}

function walk(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? walk(join(dir, f)) : [join(dir, f)]));
}

function countResults(dir) {
  for (const file of walk(dir).filter((f) => f.endsWith('.tap'))) {
    const name = file.slice(dir.length + 1, -'.tap'.length);
    const parser = new Parser();
    let summary;
    parser.on('complete', (r) => (summary = r));
    parser.on('assert', (a) => {
      if (a.skip || a.todo) counts.skip++;
      else if (a.ok) counts.pass++;
      else {
        counts.fail++;
        failures.push(`${name}: ${a.name}`);
      }
    });
    parser.end(readFileSync(file, 'utf8'));
    if (!summary || (summary.count === 0 && !summary.ok) || summary.bailout || (summary.plan && !summary.plan.skipAll && summary.plan.end !== summary.count)) {
      counts.fail++;
      failures.push(`${name}: did not complete (crash, bail-out or missing plan)`);
    }
  }
}

const args = process.argv.slice(2);
rmSync(join(root, '.tap', 'test-results'), { recursive: true, force: true });
typecheck();
const t0 = Date.now();
const services = await startLocalServices({ pebble: false });
process.stdout.write(`# shared test services ready in ${Date.now() - t0} ms\n`);
const stopServices = async () => services.stop();
const code = await new Promise((resolve) => {
  const child = spawn(bin('tap'), args, {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, TEST_POSTGRES_URL: services.postgres.url, TEST_VALKEY_URL: services.valkey.url },
  });
  const forward = (sig) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0)));
});
await stopServices();
countResults(join(root, '.tap', 'test-results'));
if (code !== 0 && counts.fail === 0) {
  counts.fail++;
  failures.push(`tap exited with status ${code}`);
}
if (failures.length) process.stdout.write(`\nfailed:\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
process.stdout.write(`\n${counts.pass} passed, ${counts.fail} failed${counts.skip ? `, ${counts.skip} skipped` : ''}\n`);
process.exit(counts.fail > 0 ? 1 : 0);
