// Shared scaffolding of the benchmarks: a scratch directory PostgreSQL can reach, local
// services, and a main() wrapper that exits non-zero with the error on stderr.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalServices, type LocalServices } from '../devenv/services.ts';

export const log = (line: string) => process.stderr.write(`${line}\n`);

/** Runs `body` with a scratch directory and fresh PostgreSQL + Valkey; always cleans up. */
export async function withBenchServices<T>(name: string, body: (ctx: { dir: string; services: LocalServices }) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `bench-${name}-`));
  chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user and must reach its directory
  const services = await startLocalServices({ dataDir: join(dir, 'services') });
  try {
    return await body({ dir, services });
  } finally {
    await services.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints the result as the last line (one JSON object), or the error, and exits. */
export function runBench(main: () => Promise<Record<string, unknown>>): void {
  main().then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}
