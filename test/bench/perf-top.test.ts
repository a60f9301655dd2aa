// bench/perf-top.ts: a phase recorded with perf, read back as CPU per request by role and frame.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { perfRecording, profileRoles, readPhase, samplesByPid } from '../../bench/perf-top.ts';

t.test('samples become microseconds per request, by role, frames merged across addresses', async (t) => {
  const script = [
    '  101 ffffffff8123 _raw_spin_unlock_irqrestore',
    '  101 7f00aa JS:*onRead file:///x.ts:3:1 0x1234',
    '  101 7f00ab JS:*onRead file:///x.ts:3:1 0x5678',
    '  202 55aa [unknown]',
    'garbage line',
  ].join('\n');
  const samples = samplesByPid(script);
  t.same([...samples.get(101)!], [['_raw_spin_unlock_irqrestore', 1], ['JS:*onRead file:///x.ts:3:1', 2]]);
  // 1000 samples a second, 10 requests: one sample is 100 us per request.
  const [node, connector, gone] = profileRoles(samples, { requests: 10, hz: 1000, pids: { node: 101, connector: 202, gone: 303 } }, 1);
  t.same(node, { role: 'node', pid: 101, usPerRequest: 300, top: [{ frame: 'JS:*onRead file:///x.ts:3:1', usPerRequest: 200 }] }, 'the total, and the top frame only');
  t.equal(connector!.usPerRequest, 100);
  t.equal(gone!.usPerRequest, 0, 'a process with no samples costs nothing');
});

t.test('a real recording names a busy process\'s JavaScript function', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perf-top-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const busy = spawn(process.execPath, ['--perf-basic-prof', '-e', 'function spinForPerfTop() { let x = 0; for (let i = 0; i < 1e6; i++) x += Math.sqrt(i); return x; } const end = Date.now() + 1500; while (Date.now() < end) spinForPerfTop();'], { stdio: 'ignore' });
  const exited = once(busy, 'exit');
  const recording = perfRecording('busy', dir);
  t.ok(recording, 'a directory given: recording');
  await exited;
  await recording!.stop(1000, { busy: busy.pid! });
  const [role] = readPhase(join(dir, 'busy'), 5);
  t.ok(role!.usPerRequest > 100, `the busy process's CPU was recorded (${role!.usPerRequest} us per request)`);
  t.ok(role!.top.some((f) => f.frame.includes('spinForPerfTop')), `its hot function is named: ${role!.top.map((f) => f.frame).join(' | ')}`);
  t.equal(perfRecording('none', ''), undefined, 'no directory: no recording');
});
