// Runs a benchmark as `npm run bench:<name>` would, at its smoke size, and returns its last
// stdout line parsed, with the fields it promised that are missing or not numbers.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BENCH_FIELDS } from '../../bench/sizes.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

export async function runBenchSmoke(name: keyof typeof BENCH_FIELDS, env: Record<string, string> = {}): Promise<{ code: number | null; result: Record<string, unknown> | undefined; bad: string[]; stderr: string }> {
  const child = spawn(process.execPath, ['--import=tsx', `bench/${name}.ts`], { cwd: root, env: { ...process.env, ...env, BENCH_SMOKE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-20_000)));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  let result: Record<string, unknown> | undefined;
  try {
    result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '');
  } catch {}
  const bad = BENCH_FIELDS[name].filter((f) => typeof result?.[f] !== 'number' || !Number.isFinite(result[f]));
  return { code, result, bad, stderr };
}
