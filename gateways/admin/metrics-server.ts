// The node's Prometheus metrics on a listener of their own (config metrics.bind, loopback by
// default), not on the admin port behind the load balancer: they name tenants' hostnames
// and resources. With metrics.token set, a scrape must send it as a Bearer token.
import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Address } from '../../core/config-fields.ts';
import type { Secret } from '../../core/secret.ts';

export interface MetricsServer {
  close(): Promise<void>;
}

function authorized(header: string | undefined, token: Secret | undefined): boolean {
  if (!token) return true;
  const want = Buffer.from(`Bearer ${token.reveal() as string}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && timingSafeEqual(got, want);
}

export async function listenMetrics(registry: Registry, bind: Address, token: Secret | undefined): Promise<MetricsServer> {
  const server: Server = createServer(async (req, res) => {
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') return json(404, { code: 'CLUSTER_ERR_API_NOT_FOUND', message: 'only GET /metrics here' });
    if (!authorized(req.headers.authorization, token)) return json(401, { code: 'CLUSTER_ERR_API_UNAUTHENTICATED', message: 'metrics need the configured Bearer token' });
    try {
      res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
    } catch {
      json(500, { code: 'CLUSTER_ERR_API_INTERNAL', message: 'metrics could not be collected' });
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(bind.port, bind.host, () => resolve()));
  return {
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
