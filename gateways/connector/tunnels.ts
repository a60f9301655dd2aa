// The tunnels this node holds: site id -> the HTTP/2 session over that site's connector
// connection. The ingress opens one HTTP/2 stream per client connection (CONNECT to a
// target id); the connector checks the target against its configuration and dials it.
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { ClusterError } from '../../core/errors.ts';
import { PROTOCOL_HEADER, TARGET_HEADER } from '../../protocol/tunnel-framing.ts';


export class TunnelRegistry {
  readonly #sessions = new Map<string, { sessionId: string; h2: http2.ClientHttp2Session }>();

  set(siteId: string, sessionId: string, h2: http2.ClientHttp2Session) {
    this.#sessions.get(siteId)?.h2.destroy();
    this.#sessions.set(siteId, { sessionId, h2 });
  }

  /** Drops the tunnel if it is still this session's. */
  delete(siteId: string, sessionId: string) {
    const cur = this.#sessions.get(siteId);
    if (cur?.sessionId !== sessionId) return;
    this.#sessions.delete(siteId);
    cur.h2.destroy();
  }

  /** Takes the tunnel out of use without closing it (streams in flight finish), if it is still this session's. */
  detach(siteId: string, sessionId: string): http2.ClientHttp2Session | undefined {
    const cur = this.#sessions.get(siteId);
    if (cur?.sessionId !== sessionId) return undefined;
    this.#sessions.delete(siteId);
    return cur.h2;
  }

  /** Tunnels held here (metrics). */
  get size(): number {
    return this.#sessions.size;
  }

  has(siteId: string): boolean {
    const s = this.#sessions.get(siteId);
    return Boolean(s && !s.h2.closed && !s.h2.destroyed);
  }

  /**
   * Opens a stream to a target through the site's tunnel. Resolves once the connector has
   * connected to the target; rejects with a coded error otherwise.
   */
  open(siteId: string, target: { id: string; host: string; port: number }, protocol: 'tcp' | 'udp', timeoutMs = 5000): Promise<Duplex> {
    const s = this.#sessions.get(siteId);
    if (!s || s.h2.closed || s.h2.destroyed) return Promise.reject(new ClusterError('CLUSTER_ERR_TUNNEL_DOWN', `no tunnel to site ${siteId} on this node`, { siteId }));
    return new Promise((resolve, reject) => {
      const stream = s.h2.request({ ':method': 'CONNECT', ':authority': `${target.host}:${target.port}`, [TARGET_HEADER]: target.id, [PROTOCOL_HEADER]: protocol });
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new ClusterError('CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT', `target ${target.id} did not answer in ${timeoutMs}ms`, { siteId, targetId: target.id }));
      }, timeoutMs);
      stream.once('response', (headers) => {
        clearTimeout(timer);
        const status = Number(headers[':status']);
        if (status === 200) return resolve(stream);
        stream.close();
        reject(new ClusterError('CLUSTER_ERR_TUNNEL_TARGET_REFUSED', `connector answered ${status} for target ${target.id}`, { siteId, targetId: target.id, status }));
      });
      stream.once('error', (err) => {
        clearTimeout(timer);
        reject(new ClusterError('CLUSTER_ERR_TUNNEL_DOWN', `tunnel stream failed: ${err.message}`, { siteId }, { cause: err }));
      });
    });
  }
}
