// Keep-alive connections to HTTP targets. Opening a tunnel stream costs the connector a new
// TCP connection to the target (and, from another node, a new peer-link connection), so the
// ingress keeps finished request streams open and reuses them, one http.Agent per path
// (target, and the node it goes through). Streams that are not sockets get the few socket
// methods the agent calls; closing the tunnel closes its pooled streams with it.
import { Agent, type AgentOptions, type ClientRequestArgs } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';

export interface UpstreamPath {
  /** Pool key: target id and address, plus the node the stream goes through. */
  key: string;
  tls: boolean;
  servername: string;
  open(): Promise<Duplex>;
}

/** The socket methods http.Agent calls on pooled connections, as no-ops where a stream has none. */
function asSocket(stream: Duplex): Socket {
  const s = stream as Duplex & Partial<Socket>;
  s.setKeepAlive ??= () => s as Socket;
  s.setNoDelay ??= () => s as Socket;
  s.ref ??= () => s as Socket;
  s.unref ??= () => s as Socket;
  s.setTimeout ??= () => s as Socket;
  return s as Socket;
}

class TunnelAgent extends Agent {
  #path: UpstreamPath;
  constructor(path: UpstreamPath, options: AgentOptions) {
    super(options);
    this.#path = path;
  }
  set path(p: UpstreamPath) {
    this.#path = p;
  }
  override createConnection(_options: ClientRequestArgs, cb?: (err: Error | null, stream: Duplex) => void): undefined {
    const path = this.#path;
    if (!cb) throw new Error('TunnelAgent connects asynchronously and needs a callback');
    path.open().then(
      (stream) => {
        // Targets inside a site commonly use private or self-signed certificates.
        const s = path.tls ? tlsConnect({ socket: asSocket(stream), servername: path.servername, rejectUnauthorized: false }) : asSocket(stream);
        cb(null, s);
      },
      (err: Error) => cb(err, undefined as never),
    );
    return undefined;
  }
}

export class UpstreamPool {
  readonly #agents = new Map<string, TunnelAgent>();
  readonly #options: AgentOptions;

  constructor(options: { maxIdlePerPath?: number; idleTimeoutMs?: number } = {}) {
    this.#options = { keepAlive: true, maxFreeSockets: options.maxIdlePerPath ?? 32, timeout: options.idleTimeoutMs ?? 30_000, scheduling: 'lifo' };
  }

  agentFor(path: UpstreamPath): Agent {
    let agent = this.#agents.get(path.key);
    if (!agent) {
      agent = new TunnelAgent(path, this.#options);
      this.#agents.set(path.key, agent);
    } else agent.path = path;
    return agent;
  }

  /**
   * Drops every pooled stream through `node` (it stopped answering): requests waiting on them
   * fail now instead of hanging, and a bodiless one is sent again on the way chosen next.
   */
  dropNode(node: string) {
    for (const [key, agent] of this.#agents) {
      if (!key.endsWith(`@${node}`)) continue;
      this.#agents.delete(key);
      agent.destroy();
    }
  }

  /** Idle connections held, for metrics and tests. */
  idle(): number {
    let n = 0;
    for (const a of this.#agents.values()) for (const list of Object.values(a.freeSockets)) n += list?.length ?? 0;
    return n;
  }

  close() {
    for (const a of this.#agents.values()) a.destroy();
    this.#agents.clear();
  }
}
