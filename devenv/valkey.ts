// Throwaway (or persistent, for `npm start`) Valkey server on loopback, with a generated password.
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { onFreePorts } from './ports.ts';
import { ServiceProcess, waitUntil } from './process.ts';
import { servicePassword } from './service-password.ts';

export interface ValkeyServerOptions {
  dir: string;
  port?: number;
  /** Keep data across restarts (append-only file in `dir`). */
  persist?: boolean;
  /** A replica of this primary (same password, so clients keep theirs after a promotion). */
  replicaOf?: LocalValkey;
  /** Listen here instead of 127.0.0.1 (`cluster up --netns`: the namespace's address). */
  host?: string;
  /** Run inside this network namespace. */
  netns?: string;
}

export class LocalValkey {
  readonly dir: string;
  readonly port: number;
  readonly persist: boolean;
  readonly #password: string;
  readonly host: string;
  readonly #netns: string | undefined;
  readonly #primary: LocalValkey | undefined;
  #proc: ServiceProcess | undefined;

  private constructor(dir: string, port: number, opts: ValkeyServerOptions) {
    this.dir = dir;
    this.port = port;
    this.persist = opts.persist ?? false;
    this.host = opts.host ?? '127.0.0.1';
    this.#netns = opts.netns;
    const primary = opts.replicaOf;
    this.#primary = primary;
    this.#password = primary ? primary.#password : servicePassword(dir);
  }

  /** The password clients and replicas use (for Sentinel's auth-pass). */
  get password(): string {
    return this.#password;
  }

  static async start(opts: ValkeyServerOptions): Promise<LocalValkey> {
    mkdirSync(opts.dir, { recursive: true });
    const on = async (port: number) => {
      const v = new LocalValkey(opts.dir, port, opts);
      await v.resume();
      return v;
    };
    return opts.port ? on(opts.port) : onFreePorts(1, [join(opts.dir, 'valkey.log')], ([port]) => on(port!));
  }

  get url(): string {
    return `redis://:${encodeURIComponent(this.#password)}@${this.host}:${this.port}`;
  }

  get logFile(): string {
    return join(this.dir, 'valkey.log');
  }

  get running(): boolean {
    return this.#proc?.alive ?? false;
  }

  async resume(): Promise<void> {
    if (this.running) return;
    // The password goes in a config file only this user reads, never on the command line (ps shows that to everyone).
    const conf = join(this.dir, 'valkey.conf');
    // A replica authenticates to its primary with the same password (and keeps it when promoted).
    const replica = this.#primary ? `masterauth "${this.#password}"\nreplicaof ${this.#primary.host} ${this.#primary.port}\n` : '';
    writeFileSync(conf, `requirepass "${this.#password}"\n${replica}`, { mode: 0o600 });
    const args = [conf, '--port', String(this.port), '--bind', this.host, '--protected-mode', 'no', '--daemonize', 'no', '--dir', this.dir, '--save', ''];
    args.push('--appendonly', this.persist ? 'yes' : 'no');
    this.#proc = new ServiceProcess({ name: 'valkey', command: 'valkey-server', args, logFile: this.logFile, netns: this.#netns });
    const pid = this.#proc.pid;
    await waitUntil('valkey', () => this.#answeringPid().then((p) => p === pid), { timeoutMs: 15_000, proc: this.#proc, logFile: this.logFile });
  }

  /** The pid of the server answering on our port: ready means *our* process answers. */
  #answeringPid(): Promise<number | undefined> {
    return new Promise((resolve) => {
      const sock = connect({ host: this.host, port: this.port });
      let reply = '';
      sock.setTimeout(1000, () => (sock.destroy(), resolve(undefined)));
      sock.once('error', () => resolve(undefined));
      sock.once('connect', () => sock.write(`AUTH ${this.#password}\r\nINFO server\r\n`));
      sock.on('data', (d) => {
        reply += d.toString();
        const m = /process_id:(\d+)/.exec(reply);
        if (m) {
          sock.destroy();
          resolve(Number(m[1]));
        }
      });
    });
  }

  /** Stops the server, to simulate an outage; `resume()` brings it back on the same port. */
  /** Freezes the server (SIGSTOP to its process group): connections stay open and nothing answers, like a hung host. */
  freeze(): void {
    this.#proc?.signal('SIGSTOP');
  }

  thaw(): void {
    this.#proc?.signal('SIGCONT');
  }

  async pause(): Promise<void> {
    await this.#proc?.stop('SIGTERM', 5000);
  }

  async stop(): Promise<void> {
    await this.pause();
  }

  /** SIGKILL: the server dies with whatever it had not replicated yet. */
  async kill(): Promise<void> {
    await this.#proc?.stop('SIGKILL', 1000);
  }
}
