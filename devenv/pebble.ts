// Pebble, Let's Encrypt's test ACME server, with pebble-challtestsrv as its default DNS.
// Debian's packages ship no certificates or config, so we make a CA and a localhost
// certificate for Pebble's own HTTPS API. Clients trust that CA via `caFile` (pass it as
// NODE_EXTRA_CA_CERTS to child processes). Certificates Pebble *issues* chain to a different
// root, served at `rootsUrl`.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { busyAddresses, onFreePorts } from './ports.ts';
import { ServiceProcess, runChecked, waitUntil } from './process.ts';

export interface PebbleOptions {
  dir: string;
  /** DNS server Pebble uses for DNS-01 checks; default: a pebble-challtestsrv we start. */
  dnsServer?: string;
  /**
   * Listen on the ports of the previous start in `dir` when they are free, so the directory
   * URL stays the same across restarts, as a real CA's does (`cluster up`; the ACME account
   * is stored per directory URL). @default false
   */
  keepPorts?: boolean;
  /** Listen on this address instead of 127.0.0.1 (`cluster up --netns`: the bridge, which the node namespaces reach). */
  host?: string;
}

/** The API CA (once per directory) and a server certificate for `host`; returns the certificate's base name. */
function makeCertificates(dir: string, host: string): string {
  const sh = (args: string[]) => runChecked('pebble', 'openssl', args, { cwd: dir });
  if (!existsSync(join(dir, 'ca.pem'))) {
    sh(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3650', '-subj', '/CN=cluster local pebble api ca']);
  }
  const base = host === '127.0.0.1' ? 'localhost' : `api-${host}`;
  if (existsSync(join(dir, `${base}.pem`))) return base;
  sh(['req', '-x509', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${base}.key`, '-out', `${base}.pem`, '-days', '825', '-subj', '/CN=localhost',
    '-addext', `subjectAltName=DNS:localhost,IP:${host}`, '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'extendedKeyUsage=serverAuth']);
  return base;
}

export class LocalPebble {
  readonly dir: string;
  readonly port: number;
  readonly managementPort: number;
  readonly dnsServer: string;
  readonly host: string;
  #procs: ServiceProcess[] = [];

  private constructor(dir: string, port: number, managementPort: number, dnsServer: string, host: string) {
    this.host = host;
    this.dir = dir;
    this.port = port;
    this.managementPort = managementPort;
    this.dnsServer = dnsServer;
  }

  static async start(opts: PebbleOptions): Promise<LocalPebble> {
    mkdirSync(opts.dir, { recursive: true });
    const logs = ['pebble.log', 'challtestsrv.log'].map((f) => join(opts.dir, f));
    const count = opts.dnsServer ? 2 : 4;
    const saved = join(opts.dir, 'ports.json');
    if (opts.keepPorts && existsSync(saved)) {
      let ports: number[] = [];
      try {
        ports = JSON.parse(readFileSync(saved, 'utf8')) as number[];
      } catch {
        /* unreadable: new ports */
      }
      const free = Array.isArray(ports) && ports.length === count && ports.every((p) => Number.isInteger(p) && p > 0 && p < 65536) && (await busyAddresses(ports.map((port) => ({ host: opts.host ?? '127.0.0.1', port, proto: 'tcp' as const })))).length === 0;
      // Taken meanwhile (or a failed start): new ports, and so a new directory URL.
      if (free) {
        const p = await LocalPebble.#startOn(opts, ports).catch(() => undefined);
        if (p) return p;
      }
    }
    return onFreePorts(count, logs, async (ports) => {
      const p = await LocalPebble.#startOn(opts, ports);
      if (opts.keepPorts) writeFileSync(saved, JSON.stringify(ports));
      return p;
    });
  }

  static async #startOn(opts: PebbleOptions, [port, mgmt, dnsPort, challMgmt]: number[]): Promise<LocalPebble> {
    const host = opts.host ?? '127.0.0.1';
    const cert = makeCertificates(opts.dir, host);
    let dns = opts.dnsServer;
    const procs: ServiceProcess[] = [];
    if (!dns) {
      dns = `127.0.0.1:${dnsPort}`;
      procs.push(new ServiceProcess({
        name: 'pebble-challtestsrv',
        command: 'pebble-challtestsrv',
        args: ['-dns01', dns, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${challMgmt}`],
        logFile: join(opts.dir, 'challtestsrv.log'),
      }));
    }
    const config = {
      pebble: {
        listenAddress: `${host}:${port}`,
        managementListenAddress: `${host}:${mgmt}`,
        certificate: join(opts.dir, `${cert}.pem`),
        privateKey: join(opts.dir, `${cert}.key`),
        httpPort: 5002,
        tlsPort: 5001,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    };
    writeFileSync(join(opts.dir, 'pebble.json'), JSON.stringify(config, null, 2));
    const env = { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' };
    const logFile = join(opts.dir, 'pebble.log');
    const pebble = new ServiceProcess({ name: 'pebble', command: 'pebble', args: ['-config', join(opts.dir, 'pebble.json'), '-dnsserver', dns], env, logFile });
    procs.push(pebble);
    const p = new LocalPebble(opts.dir, port!, mgmt!, dns, host);
    p.#procs = procs;
    try {
      await waitUntil('pebble', () => p.#get(p.directoryUrl).then((r) => r.status === 200), { timeoutMs: 20_000, proc: pebble, logFile });
    } catch (err) {
      await p.stop();
      throw err;
    }
    return p;
  }

  get directoryUrl(): string {
    return `https://${this.host}:${this.port}/dir`;
  }

  /** PEM of the CA that signed Pebble's API certificate (for NODE_EXTRA_CA_CERTS). */
  get caFile(): string {
    return join(this.dir, 'ca.pem');
  }

  /** Where Pebble serves the root of the certificates it issues. */
  get rootsUrl(): string {
    return `https://${this.host}:${this.managementPort}/roots/0`;
  }

  /** The root certificate of issued certificates, PEM. */
  async issuedRoot(): Promise<string> {
    const res = await this.#get(this.rootsUrl);
    if (res.status !== 200) throw new Error(`pebble roots: HTTP ${res.status}`);
    return res.body;
  }

  #get(url: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(url, { ca: readFileSync(this.caFile), timeout: 2000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  async stop(): Promise<void> {
    await Promise.all(this.#procs.map((p) => p.stop('SIGTERM', 3000)));
  }
}
