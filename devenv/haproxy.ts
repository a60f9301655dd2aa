// haproxy as the operator's load balancer in front of the nodes' admin API (tests, `cluster up`).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, isListening } from './ports.ts';
import { ServiceProcess, waitUntil } from './process.ts';

export interface HaproxyOptions {
  dir: string;
  /** host:port of each node's admin listener */
  backends: Array<{ name: string; address: string }>;
  port?: number;
  /** Listen address. @default "127.0.0.1" */
  host?: string;
  /** Health-check path of the backends; null for none. @default "/readyz" */
  checkPath?: string | null;
}

export function haproxyConfig(port: number, backends: HaproxyOptions['backends'], checkPath: string | null = '/readyz', host = '127.0.0.1'): string {
  return [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 1s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  option forwardfor',
    '  http-reuse safe',
    '  retries 2',
    '  option redispatch',
    'frontend admin',
    `  bind ${host}:${port}`,
    '  default_backend nodes',
    'backend nodes',
    '  balance roundrobin',
    ...(checkPath ? [`  option httpchk GET ${checkPath}`, '  http-check expect status 200', '  default-server inter 500ms fall 2 rise 1'] : []),
    ...backends.map((b) => `  server ${b.name} ${b.address}${checkPath ? ' check' : ''}`),
    '',
  ].join('\n');
}

export class LocalHaproxy {
  readonly port: number;
  readonly host: string;
  readonly #proc: ServiceProcess;

  private constructor(host: string, port: number, proc: ServiceProcess) {
    this.host = host;
    this.port = port;
    this.#proc = proc;
  }

  static async start(opts: HaproxyOptions): Promise<LocalHaproxy> {
    const port = opts.port ?? (await freePort());
    const cfg = join(opts.dir, 'haproxy.cfg');
    const host = opts.host ?? '127.0.0.1';
    writeFileSync(cfg, haproxyConfig(port, opts.backends, opts.checkPath === undefined ? '/readyz' : opts.checkPath, host));
    const logFile = join(opts.dir, 'haproxy.log');
    const proc = new ServiceProcess({ name: 'haproxy', command: 'haproxy', args: ['-f', cfg, '-db'], logFile });
    await waitUntil('haproxy', () => isListening(host, port), { timeoutMs: 10_000, proc, logFile });
    return new LocalHaproxy(host, port, proc);
  }

  get url(): string {
    return `http://${this.host}:${this.port}`;
  }

  /** The haproxy process (for its CPU time in /proc). */
  get pid(): number {
    return this.#proc.pid;
  }

  async stop(): Promise<void> {
    await this.#proc.stop('SIGTERM', 3000);
  }
}
