// One signed HTTP request to a node's peer port, over TLS when the cluster's peer CA is
// configured. Node's own http(s) client rather than fetch: the cluster CA is trusted for
// this request only, never process-wide.
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Secret } from '../../core/secret.ts';
import { authHeaders, type PeerIdentity } from '../../protocol/peer.ts';

export interface PeerTls {
  /** PEM: this node's certificate and key (server side), and the cluster CA that signs every node's. */
  cert: string;
  key: string;
  ca: string;
}

/** The peer port's TLS material from the configured PEM files; none configured: plain. */
export function readPeerTls(files: { tlsCert?: string | undefined; tlsKey?: string | undefined; tlsCa?: string | undefined }): PeerTls | undefined {
  const { tlsCert, tlsKey, tlsCa } = files;
  if (!tlsCert || !tlsKey || !tlsCa) return undefined;
  return { cert: readFileSync(tlsCert, 'utf8'), key: readFileSync(tlsKey, 'utf8'), ca: readFileSync(tlsCa, 'utf8') };
}

/** Client options for a peer connection: the cluster CA, and any certificate it signed (nodes are dialled by address). */
export function peerClientTls(tls: Pick<PeerTls, 'ca'> | undefined): { ca?: string; checkServerIdentity?: () => undefined } {
  return tls ? { ca: tls.ca, checkServerIdentity: () => undefined } : {};
}

export function peerRequest(opts: {
  address: string;
  target: string;
  method: 'GET' | 'POST';
  path: string;
  secret: Secret;
  self: PeerIdentity;
  tls: Pick<PeerTls, 'ca'> | undefined;
  body?: unknown;
  timeoutMs: number;
  /** Source address (tools: `cluster chaos` watches from the one address its network faults let through). */
  localAddress?: string;
}): Promise<{ status: number; body: any }> {
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const headers: Record<string, string> = { ...authHeaders(opts.secret, opts.self, { method: opts.method, path: opts.path, target: opts.target }) };
  if (payload !== undefined) headers['content-type'] = 'application/json';
  const send = opts.tls ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(`${opts.tls ? 'https' : 'http'}://${opts.address}${opts.path}`, { method: opts.method, headers, agent: false, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}), ...peerClientTls(opts.tls) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        } catch (err) {
          reject(err);
        }
      });
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`peer ${opts.address} did not answer in ${opts.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
