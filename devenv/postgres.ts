// Throwaway (or persistent, for `npm start`) PostgreSQL 15. initdb refuses root, so as root
// the data directory is owned by, and the server runs as, the `postgres` user. Connections
// need the generated password (scram-sha-256), even on loopback.
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ClusterError } from '../core/errors.ts';
import pg from 'pg';
import { onFreePorts } from './ports.ts';
import { ServiceProcess, childPids, runChecked, waitUntil } from './process.ts';
import { servicePassword } from './service-password.ts';

export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PostgresOptions {
  /** Directory for data, socket and log; created if missing. */
  dir: string;
  port?: number;
  /** Trade durability for speed (tests): no fsync, no synchronous commit. */
  fast?: boolean;
  /** Listen here instead of 127.0.0.1 (`cluster up --netns`: the namespace's address). */
  host?: string;
  /** Run inside this network namespace. */
  netns?: string;
  /** Also accept password logins from this network (CIDR); loopback always. */
  clients?: string;
}

export class LocalPostgres {
  readonly dir: string;
  readonly port: number;
  readonly fast: boolean;
  readonly host: string;
  readonly #netns: string | undefined;
  readonly #clients: string | undefined;
  #proc: ServiceProcess | undefined;
  #password = '';

  private constructor(dir: string, port: number, opts: PostgresOptions) {
    this.dir = dir;
    this.port = port;
    this.fast = opts.fast ?? false;
    this.host = opts.host ?? '127.0.0.1';
    this.#netns = opts.netns;
    this.#clients = opts.clients;
  }

  static async start(opts: PostgresOptions): Promise<LocalPostgres> {
    const on = async (port: number) => {
      const pgsql = new LocalPostgres(opts.dir, port, opts);
      pgsql.#init();
      await pgsql.resume();
      return pgsql;
    };
    return opts.port ? on(opts.port) : onFreePorts(1, [join(opts.dir, 'postgres.log')], ([port]) => on(port!));
  }

  get url(): string {
    return this.urlFor('postgres');
  }

  urlFor(database: string): string {
    return `postgres://postgres:${encodeURIComponent(this.#password)}@${this.host}:${this.port}/${database}`;
  }

  get logFile(): string {
    return join(this.dir, 'postgres.log');
  }

  get running(): boolean {
    return this.#proc?.alive ?? false;
  }

  #init() {
    mkdirSync(this.dir, { recursive: true });
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      chownSync(this.dir, ...pgIds());
      reachableByPostgres(this.dir);
    }
    this.#password = servicePassword(this.dir);
    const data = join(this.dir, 'data');
    if (existsSync(join(data, 'PG_VERSION'))) {
      this.#requirePassword(data, asRoot);
      return this.#allowClients(data);
    }
    // initdb reads the password from a file the postgres user can read, removed right after.
    const pwfile = join(this.dir, 'initdb-password');
    writeFileSync(pwfile, `${this.#password}\n`, { mode: 0o600 });
    if (asRoot) chownSync(pwfile, ...pgIds());
    try {
      runChecked('postgres', join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--no-sync', '--no-instructions'], asRoot ? { user: 'postgres' } : {});
    } finally {
      rmSync(pwfile, { force: true });
    }
    this.#allowClients(data);
  }

  /**
   * A data directory made before passwords (it trusts every local connection): the password
   * is set in single-user mode and the server asks for it from then on.
   */
  #requirePassword(data: string, asRoot: boolean) {
    const hba = join(data, 'pg_hba.conf');
    const conf = readFileSync(hba, 'utf8');
    if (!/\btrust\s*$/m.test(conf)) return;
    const set = spawnSync(asRoot ? 'runuser' : join(PG_BIN, 'postgres'), [...(asRoot ? ['-u', 'postgres', '--', join(PG_BIN, 'postgres')] : []), '--single', '-D', data, 'postgres'], {
      input: `ALTER USER postgres PASSWORD '${this.#password.replace(/'/g, "''")}';\n`,
      encoding: 'utf8',
    });
    if (set.status !== 0) throw new ClusterError('CLUSTER_ERR_LOCAL_SERVICE_FAILED', `postgres: could not set the password: ${set.stderr.trim().slice(-500)}`, { service: 'postgres' });
    writeFileSync(hba, conf.replace(/\btrust(\s*)$/gm, 'scram-sha-256$1'));
  }

  /** initdb allows loopback only: a server other machines (namespaces) use must let their network in. */
  #allowClients(data: string) {
    if (!this.#clients) return;
    const hba = join(data, 'pg_hba.conf');
    const line = `host all all ${this.#clients} scram-sha-256`;
    const conf = readFileSync(hba, 'utf8');
    if (!conf.split('\n').includes(line)) writeFileSync(hba, `${conf.trimEnd()}\n${line}\n`);
  }

  /** Starts (or restarts after `pause`) the server on the same port and data. */
  async resume(): Promise<void> {
    if (this.running) return;
    // TCP only: a Unix socket path under a deep test directory can exceed the 107-byte limit.
    // pg_stat_statements: bench:scale counts the statements the nodes run.
    const args = ['-D', join(this.dir, 'data'), '-p', String(this.port), '-c', 'unix_socket_directories=', '-c', `listen_addresses=${this.host}`, '-c', 'max_connections=300', '-c', 'shared_preload_libraries=pg_stat_statements'];
    if (this.fast) args.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
    this.#proc = new ServiceProcess({ name: 'postgres', command: join(PG_BIN, 'postgres'), args, user: 'postgres', logFile: this.logFile, netns: this.#netns });
    await waitUntil('postgres', () => this.#probe(), { timeoutMs: 30_000, proc: this.#proc, logFile: this.logFile });
  }

  async #probe(): Promise<boolean> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 1000 });
    try {
      await client.connect();
      // Ready means *our* server answers (not another one that already held the port).
      const { rows } = await client.query('SHOW data_directory');
      return rows[0]?.data_directory === join(this.dir, 'data');
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** Stops the server (fast shutdown) but keeps its data, to simulate an outage. */
  /**
   * Freezes the server, like a hung host: connections stay open and nothing answers. Every
   * backend calls setsid(), so the postmaster's process group alone would leave open
   * connections working: each of its children is stopped too.
   */
  freeze(): void {
    this.#signalAll('SIGSTOP');
  }

  thaw(): void {
    this.#signalAll('SIGCONT');
  }

  #signalAll(sig: NodeJS.Signals) {
    if (!this.#proc?.alive) return;
    this.#proc.signal(sig);
    for (const pid of childPids(this.#proc.pid)) {
      try {
        process.kill(pid, sig);
      } catch {
        /* exited meanwhile */
      }
    }
  }

  async pause(): Promise<void> {
    await this.#proc?.stop('SIGINT', 10_000);
  }

  async stop(): Promise<void> {
    await this.pause();
  }

  /** Creates an empty database (per-test isolation). */
  async createDatabase(name: string): Promise<string> {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name ${name}`);
    const client = new pg.Client({ connectionString: this.url });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    return this.urlFor(name);
  }
}

function pgIds(): [number, number] {
  const out = runChecked('postgres', 'id', ['-u', 'postgres']).trim();
  const gid = runChecked('postgres', 'id', ['-g', 'postgres']).trim();
  return [Number(out), Number(gid)];
}

/**
 * The server runs as `postgres`, which must be able to walk down to its directory. A clone
 * under /root (mode 0700) is the usual trap; initdb would only say "permission denied".
 */
function reachableByPostgres(dir: string): void {
  const can = (d: string) => spawnSync('runuser', ['-u', 'postgres', '--', 'test', '-x', d]).status === 0;
  const abs = resolve(dir);
  if (can(abs)) return;
  let blocked = abs;
  for (let d = dirname(abs); d !== blocked && !can(d); d = dirname(d)) blocked = d;
  throw new ClusterError('CLUSTER_ERR_LOCAL_SERVICE_FAILED', `postgres: the postgres user cannot reach ${abs}: ${blocked} is not searchable by it. Run \`chmod o+x ${blocked}\`, or use --data-dir with a directory it can reach (e.g. under /var/tmp)`, { service: 'postgres' });
}
