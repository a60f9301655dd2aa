// The userspace driver: runs wireguard-go for one interface and speaks its UAPI text protocol
// over the unix socket it opens (no `wg` process per change). wireguard-go is supervised: if
// it dies, it is started again and the last settings and peers are applied anew (and the
// owner's onRestart puts back the interface's address and routes, which died with it).
// It is started under `setpriv --pdeathsig KILL`, so a node that is SIGKILLed takes its device
// with it: no orphaned process keeps peers the cluster has moved elsewhere. It runs in a
// process group of its own, so a signal meant to make the node drain does not stop it first.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import type { DeviceSettings, DeviceState, PeerConfig, WireGuardDevice } from './device.ts';
import { answerErrno, decodeGet, encodeConfigure, encodeRemovePeer, encodeSetPeer, GET_REQUEST } from './uapi-codec.ts';
import { deleteLink } from './link.ts';

export const UAPI_SOCKET_DIR = '/var/run/wireguard';

function onPath(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = join(dir, binary);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Why wireguard-go cannot run here, or undefined when it can. */
export function uapiUnavailable(binary = 'wireguard-go'): string | undefined {
  if (process.platform !== 'linux') return `wireguard-go is driven only on Linux here (this is ${process.platform})`;
  if (!onPath(binary)) return `${binary} is not installed (Debian: apt install --no-install-recommends wireguard-go)`;
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    return '/dev/net/tun is missing or not writable (TUN devices need root or CAP_NET_ADMIN)';
  }
  if (process.getuid?.() !== 0) return 'creating a TUN interface needs root (or CAP_NET_ADMIN)';
  return undefined;
}

/** One request on the UAPI socket; resolves with the answer's text (errno 0) or rejects. */
export function uapiRequest(socketPath: string, request: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let text = '';
    const timer = setTimeout(() => sock.destroy(new Error(`UAPI ${socketPath} did not answer in ${timeoutMs}ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request));
    sock.on('data', (chunk: string) => {
      text += chunk;
      let errno: number | undefined;
      try {
        errno = answerErrno(text);
      } catch (err) {
        sock.destroy(err as Error);
        return;
      }
      if (errno === undefined) return;
      clearTimeout(timer);
      sock.end();
      if (errno === 0) resolve(text);
      else reject(new Error(`UAPI ${socketPath}: errno ${errno}`));
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`UAPI ${socketPath} closed before answering`));
    });
  });
}

export interface UapiDeviceOptions {
  name: string;
  logger: Logger;
  /** Called after wireguard-go was restarted and the device state re-applied (the interface is new: address and routes are gone). */
  onRestart?: () => Promise<void>;
  binary?: string;
}

export class UapiDevice implements WireGuardDevice {
  readonly driver = 'uapi' as const;
  readonly name: string;
  readonly #o: UapiDeviceOptions;
  readonly #log: Logger;
  readonly #socket: string;
  #child: ChildProcess | undefined;
  #settings: DeviceSettings | undefined;
  readonly #peers = new Map<string, PeerConfig>();
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #restarts = 0;
  #watch: NodeJS.Timeout | undefined;

  private constructor(o: UapiDeviceOptions) {
    this.#o = o;
    this.name = o.name;
    this.#log = o.logger.child({ component: 'wireguard-go', interface: o.name });
    this.#socket = join(UAPI_SOCKET_DIR, `${o.name}.sock`);
  }

  /** Attaches to a wireguard-go already serving the interface, or starts one. */
  static async open(o: UapiDeviceOptions): Promise<UapiDevice> {
    const dev = new UapiDevice(o);
    if (existsSync(dev.#socket) && (await uapiRequest(dev.#socket, GET_REQUEST, 1000).then(() => true, () => false))) {
      dev.#log.info('attached to the wireguard-go already serving this interface');
    } else {
      await dev.#start();
    }
    // A wireguard-go we did not start (attached) is watched through its socket.
    dev.#watch = setInterval(() => void dev.#check(), 2000).unref();
    return dev;
  }

  async #start(): Promise<void> {
    await deleteLink(this.name); // a stale interface whose process is gone
    rmSync(this.#socket, { force: true }); // and its socket, left by a process that was killed
    const binary = this.#o.binary ?? 'wireguard-go';
    const setpriv = onPath('setpriv');
    const [cmd, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', binary, '-f', this.name]] : [binary, ['-f', this.name]];
    // A process group of its own: a SIGTERM to the node's group (a service manager stopping it)
    // must not end the device while the node drains through it; the node closes it last. The
    // parent-death signal still ends it with the node.
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'error' }, detached: true });
    this.#child = child;
    child.stdout!.on('data', (d: Buffer) => this.#log.debug({ out: d.toString().trim() }, 'wireguard-go'));
    // Its start-up banner (a box drawn in stderr) says nothing an operator can act on.
    child.stderr!.on('data', (d: Buffer) => {
      const out = d.toString().trim();
      if (/[┌│└]/.test(out)) this.#log.debug({ out }, 'wireguard-go');
      else this.#log.warn({ out }, 'wireguard-go');
    });
    child.once('exit', (code, signal) => {
      if (this.#child === child) this.#child = undefined;
      if (!this.#closed) {
        this.#log.error({ code, signal }, 'wireguard-go exited; starting it again');
        void this.#recover();
      }
    });
    const deadline = Date.now() + 5000;
    while (!(existsSync(this.#socket) && (await uapiRequest(this.#socket, GET_REQUEST, 500).then(() => true, () => false)))) {
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(`wireguard-go did not open ${this.#socket} within 5s`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    this.#log.info({ pid: child.pid }, 'wireguard-go started');
  }

  async #check(): Promise<void> {
    if (this.#closed || this.#child) return; // our own child is watched by its exit event
    const ok = await uapiRequest(this.#socket, GET_REQUEST, 1000).then(() => true, () => false);
    if (!ok && !this.#closed) {
      this.#log.error('the attached wireguard-go stopped answering; starting our own');
      await this.#recover();
    }
  }

  #recovering: Promise<void> | undefined;
  #recover(): Promise<void> {
    this.#recovering ??= (async () => {
      while (!this.#closed) {
        const delay = Math.min(5000, 100 * 2 ** this.#restarts++);
        await new Promise((r) => setTimeout(r, delay));
        try {
          await this.#start();
          if (this.#settings) await this.#send(encodeConfigure({ ...this.#settings, peers: [...this.#peers.values()] }));
          await this.#o.onRestart?.();
          this.#log.warn({ peers: this.#peers.size }, 'wireguard-go restarted; settings and peers applied again');
          this.#restarts = 0;
          return;
        } catch (err) {
          this.#log.error({ err: (err as Error).message }, 'could not restart wireguard-go; trying again');
        }
      }
    })().finally(() => (this.#recovering = undefined));
    return this.#recovering;
  }

  /** Requests run one at a time, in order. */
  #send(request: string): Promise<string> {
    const next = this.#queue.then(() => uapiRequest(this.#socket, request));
    this.#queue = next.catch(() => {});
    return next;
  }

  async configure(s: DeviceSettings): Promise<void> {
    this.#settings = s;
    this.#peers.clear();
    for (const p of s.peers) this.#peers.set(p.publicKey, p);
    await this.#send(encodeConfigure(s));
  }

  async setPeer(p: PeerConfig): Promise<void> {
    this.#peers.set(p.publicKey, p);
    await this.#send(encodeSetPeer(p));
  }

  async removePeer(publicKey: string): Promise<void> {
    this.#peers.delete(publicKey);
    await this.#send(encodeRemovePeer(publicKey));
  }

  async read(): Promise<DeviceState> {
    return decodeGet(await this.#send(GET_REQUEST));
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#watch);
    const child = this.#child;
    // Deleting the interface ends wireguard-go (ours or an attached one).
    await deleteLink(this.name);
    if (child && child.exitCode === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => (child.kill('SIGKILL'), resolve()), 2000);
        child.once('exit', () => (clearTimeout(t), resolve()));
        child.kill('SIGTERM');
      });
    }
    rmSync(this.#socket, { force: true });
  }
}
