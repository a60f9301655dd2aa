// One `cluster up` per data directory. A second launcher on the same directory would start a
// second Valkey appending to the same files and Pebble rewriting its config, and `--fresh`
// would delete a running cluster's data from under it; so the launcher takes this lock before
// it touches anything. The lock is a pid file created exclusively; a file left by a launcher
// that died (its pid gone, or now another program's) is taken over.
import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterError } from '../core/errors.ts';

export const LOCK_FILE = 'up.pid';

/** True while `pid` is a running `cluster up` (on Linux, its command line says so). */
function launcherRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return args.includes('up') && args.some((a) => a.endsWith('cluster.mjs') || a.endsWith('cluster.ts') || a.endsWith('cluster'));
  } catch {
    return true; // alive but unreadable: assume it is ours rather than risk its data
  }
}

/** Takes the lock on `dataDir` for this process, or throws CLUSTER_ERR_LOCAL_DATA_DIR_BUSY. */
export function lockDataDir(dataDir: string): { release(): void } {
  const file = join(dataDir, LOCK_FILE);
  // The pid is written first and linked into place, so the lock never exists without it.
  const mine = join(dataDir, `.${LOCK_FILE}.${process.pid}`);
  writeFileSync(mine, `${process.pid}\n`, { mode: 0o644 });
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(mine, file);
        return {
          release() {
            // Only our own lock (a takeover after we died is not ours to remove), and never an
            // error: this runs on the way out.
            try {
              if (readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file, { force: true });
            } catch {
              /* already gone */
            }
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && launcherRunning(pid)) {
          throw new ClusterError('CLUSTER_ERR_LOCAL_DATA_DIR_BUSY', `another \`cluster up\` (pid ${pid}) is running with ${dataDir}; stop it (Ctrl-C where it runs, or kill ${pid}) or pass another --data-dir`, { dataDir, pid });
        }
        rmSync(file, { force: true }); // left by a launcher that is gone
      }
    }
    throw new ClusterError('CLUSTER_ERR_LOCAL_DATA_DIR_BUSY', `could not take ${file}: another launcher keeps taking it`, { dataDir, pid: 0 });
  } finally {
    rmSync(mine, { force: true });
  }
}
