// A Valkey Sentinel on loopback for tests and `cluster up --valkey-replica`: the same
// valkey-server binary in Sentinel mode, watching one primary under a name, failing over to
// its replica when a quorum of Sentinels agree it is down. Sentinel rewrites its own config
// file as the topology changes, so it lives in the Sentinel's directory.
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { onFreePorts } from './ports.ts';
import { ServiceProcess, waitUntil } from './process.ts';
import type { LocalValkey } from './valkey.ts';

export interface SentinelOptions {
  dir: string;
  primary: LocalValkey;
  masterName: string;
  quorum: number;
  /** Silence after which this Sentinel thinks the primary down. @default 1000 */
  downAfterMs?: number;
}

/** One command to a Sentinel (no auth), its raw RESP reply. */
export function sentinelCommand(port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    let reply = '';
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error('timeout')));
    sock.once('error', reject);
    sock.once('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (d) => {
      reply += d.toString();
      // A complete simple reply, or an array whose last bulk string arrived.
      if (/^[+\-:].*\r\n$/s.test(reply) || /^\*\d+\r\n(\$\d+\r\n.*\r\n)+$/s.test(reply) || reply === '*-1\r\n') {
        sock.destroy();
        resolve(reply);
      }
    });
  });
}

export class LocalSentinel {
  readonly port: number;
  readonly #proc: ServiceProcess;

  private constructor(port: number, proc: ServiceProcess) {
    this.port = port;
    this.#proc = proc;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(o: SentinelOptions): Promise<LocalSentinel> {
    mkdirSync(o.dir, { recursive: true });
    const log = join(o.dir, 'sentinel.log');
    return onFreePorts(1, [log], async ([port]) => {
      const conf = join(o.dir, 'sentinel.conf');
      const down = o.downAfterMs ?? 1000;
      writeFileSync(conf, [
        `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', 'daemonize no', `dir ${o.dir}`,
        `sentinel monitor ${o.masterName} 127.0.0.1 ${o.primary.port} ${o.quorum}`,
        `sentinel auth-pass ${o.masterName} ${o.primary.password}`,
        `sentinel down-after-milliseconds ${o.masterName} ${down}`,
        `sentinel failover-timeout ${o.masterName} ${Math.max(3000, 3 * down)}`,
        `sentinel parallel-syncs ${o.masterName} 1`,
        '',
      ].join('\n'), { mode: 0o600 });
      const proc = new ServiceProcess({ name: 'valkey-sentinel', command: 'valkey-server', args: [conf, '--sentinel'], logFile: log });
      await waitUntil('valkey-sentinel', () => sentinelCommand(port!, 'PING').then((r) => r.startsWith('+PONG'), () => false), { timeoutMs: 15_000, proc, logFile: log });
      return new LocalSentinel(port!, proc);
    });
  }

  /** The port of the primary this Sentinel names now. */
  async primaryPort(masterName: string): Promise<number | undefined> {
    const r = await sentinelCommand(this.port, `SENTINEL get-master-addr-by-name ${masterName}`).catch(() => '');
    const m = /\$\d+\r\n[^\r]+\r\n\$\d+\r\n(\d+)\r\n/.exec(r);
    return m ? Number(m[1]) : undefined;
  }

  async stop(): Promise<void> {
    await this.#proc.stop('SIGTERM', 3000);
  }
}
