// UDP resources: every node binds each enabled UDP resource's port. Datagrams from one
// client address form a session: one stream through a local tunnel (or forwarded, PROXY v2
// first, to the node holding one) carrying length-prefixed datagrams both ways, closed after
// `idleMs` without traffic. New sessions are admitted within limits (udp-admission.ts); a
// session whose stream is not keeping up drops datagrams instead of buffering them. Every
// drop is counted with its reason.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
import type { PortRange } from '../../core/config-fields.ts';
import { ClusterError } from '../../core/errors.ts';
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { Deframer, MAX_DATAGRAM, frameDatagram } from '../../protocol/datagrams.ts';
import type { TunnelRegistry } from '../connector/tunnels.ts';
import type { RouteChange, RouteTable } from './routes.ts';
import { wantedPorts, type ListenReport } from './resource-ports.ts';
import { UDP_LIMITS, UdpAdmission, type DropReason, type UdpLimits } from './udp-admission.ts';
import { pathTo, type Placement } from './upstream.ts';

interface Session {
  stream: Duplex | undefined;
  queue: Buffer[];
  timer: NodeJS.Timeout;
  /** The admitted source, released when the session ends. */
  source: string;
  /** The stream's buffer is full: datagrams are dropped until it drains. */
  congested: boolean;
}

const MAX_QUEUED = 64;

export class UdpIngress {
  readonly #sockets = new Map<number, { socket: Socket; resourceId: string; sessions: Map<string, Session> }>();
  readonly #log: Logger;
  readonly #admission: UdpAdmission;

  constructor(
    private readonly deps: {
      routes: RouteTable; tunnels: TunnelRegistry; placement: Placement; bindHost: string; ports: PortRange; report: ListenReport; logger: Logger; clock: Clock;
      idleMs?: number;
      limits?: UdpLimits;
      /** A datagram was dropped (metrics). */
      onDrop?: (reason: DropReason) => void;
    },
  ) {
    this.#log = deps.logger.child({ component: 'ingress-udp' });
    this.#admission = new UdpAdmission(deps.limits ?? UDP_LIMITS, deps.clock);
    // Only a change to a UDP route can change the ports wanted.
    deps.routes.on('updated', (changes: RouteChange[]) => changes.some((c) => c.before?.protocol === 'udp' || c.after?.protocol === 'udp') && this.sync());
  }

  sync() {
    const want = wantedPorts(this.deps.routes.all(), 'udp', this.deps.ports, this.deps.report);
    for (const [port, entry] of this.#sockets) {
      if (want.get(port) === entry.resourceId) continue;
      for (const s of entry.sessions.values()) this.#end(s);
      entry.socket.close();
      this.#sockets.delete(port);
      this.deps.report(entry.resourceId, null);
    }
    for (const [port, resourceId] of want) {
      if (this.#sockets.has(port)) continue;
      const socket = createSocket(isIPv6(this.deps.bindHost) ? 'udp6' : 'udp4');
      const entry = { socket, resourceId, sessions: new Map<string, Session>() };
      socket.on('listening', () => this.deps.report(resourceId, null));
      socket.on('error', (err) => {
        this.#log.error({ port, resourceId, err: err.message }, 'udp resource socket error');
        if (this.#sockets.get(port) !== entry || (err as NodeJS.ErrnoException).syscall !== 'bind') return;
        // Not bound: forget it (the next route update tries again) and say why in its status.
        this.#sockets.delete(port);
        this.deps.report(resourceId, `udp port ${port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      });
      socket.on('message', (msg, rinfo) => this.#datagram(entry, msg, rinfo));
      socket.bind(port, this.deps.bindHost);
      this.#sockets.set(port, entry);
    }
  }

  #touch(entry: { sessions: Map<string, Session> }, key: string, s: Session) {
    clearTimeout(s.timer);
    s.timer = setTimeout(() => {
      entry.sessions.delete(key);
      this.#end(s);
    }, this.deps.idleMs ?? 30_000);
  }

  #end(s: Session) {
    clearTimeout(s.timer);
    s.stream?.destroy();
    if (s.source) this.#admission.closed(s.source);
    s.source = ''; // released once, however it ends
  }

  #drop(reason: DropReason) {
    this.deps.onDrop?.(reason);
  }

  /** Writes one datagram to the session's stream, or drops it while the stream is backed up. */
  #forward(s: Session, msg: Buffer) {
    if (s.congested) return this.#drop('backpressure');
    if (!s.stream!.write(frameDatagram(msg))) {
      s.congested = true;
      s.stream!.once('drain', () => (s.congested = false));
    }
  }

  #datagram(entry: { socket: Socket; resourceId: string; sessions: Map<string, Session> }, msg: Buffer, rinfo: RemoteInfo) {
    if (msg.length > MAX_DATAGRAM) return this.#drop('oversized');
    const key = `${rinfo.address}|${rinfo.port}`;
    let s = entry.sessions.get(key);
    if (s) {
      this.#touch(entry, key, s);
      if (s.stream) this.#forward(s, msg);
      else if (s.queue.length < MAX_QUEUED) s.queue.push(msg);
      else this.#drop('queue-full');
      return;
    }
    const admitted = this.#admission.admit(rinfo.address, entry.sessions.size);
    if (!admitted.ok) return this.#drop(admitted.reason);
    s = { stream: undefined, queue: [msg], timer: setTimeout(() => {}, 0), source: admitted.source, congested: false };
    entry.sessions.set(key, s);
    this.#touch(entry, key, s);
    void this.#open(entry, key, s, rinfo);
  }

  async #open(entry: { socket: Socket; resourceId: string; sessions: Map<string, Session> }, key: string, s: Session, rinfo: RemoteInfo) {
    try {
      const route = this.deps.routes.byId(entry.resourceId);
      if (!route) throw new ClusterError('CLUSTER_ERR_API_NOT_FOUND', 'the resource is gone', {});
      const stream = await pathTo(route, this.deps, 'udp').open({
        source: { address: rinfo.address, port: rinfo.port },
        destination: { address: this.deps.bindHost, port: entry.socket.address().port },
      });
      const deframer = new Deframer();
      stream.on('data', (chunk: Buffer) => {
        const current = entry.sessions.get(key);
        if (current) this.#touch(entry, key, current);
        for (const d of deframer.push(chunk)) entry.socket.send(d, rinfo.port, rinfo.address);
      });
      stream.on('error', () => {});
      stream.on('close', () => {
        if (entry.sessions.get(key) === s) entry.sessions.delete(key);
        this.#end(s);
      });
      s.stream = stream;
      for (const q of s.queue.splice(0)) this.#forward(s, q);
    } catch (err) {
      this.#log.warn({ resourceId: entry.resourceId, client: rinfo.address, err: (err as Error).message }, 'udp session not routed');
      entry.sessions.delete(key);
      this.#end(s);
    }
  }

  close() {
    for (const { socket, sessions } of this.#sockets.values()) {
      for (const s of sessions.values()) this.#end(s);
      socket.close();
    }
    this.#sockets.clear();
  }
}
