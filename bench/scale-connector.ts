// The load connector of bench:scale (not shipped to sites): one process holding the tunnels of
// many sites, each a real `Connector` (token, control WebSocket, direct data connection,
// standby tunnel, health checks, the same reconnect behaviour), each from a source address of
// its own as separate sites would be. Started with the path of a JSON file
// `{ endpoints, statusPort, sites: [{ id, secret, address }] }`; answers GET /status on
// 127.0.0.1:statusPort with every site's state, for the benchmark to poll.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Connector } from '../connector/connector.ts';
import { createLogger } from '../core/log.ts';
import { LoopLag } from '../core/loop-lag.ts';

export interface LoadConnectorSpec {
  endpoints: string[];
  statusPort: number;
  sites: Array<{ id: string; secret: string; address: string }>;
}

/** One site as the status answer shows it: id, state, node, standby node, last `connected` (ms epoch), token refusals by a rate limit, where its data plane runs, when its primary was last seen lost (ms epoch, 0 never). */
export type SiteStatus = [id: string, state: string, node: string | null, standby: string | null, connectedAt: number, limited: number, data: 'direct' | 'frames' | null, lostAt: number];

const spec = JSON.parse(readFileSync(process.argv.at(-1)!, 'utf8')) as LoadConnectorSpec;
const logger = createLogger({ level: process.env.SCALE_CONNECTOR_LOG ?? 'error' });
const sites = spec.sites.map((s, k) => {
  // A connector tries its endpoints in order: sites given the nodes' addresses in different
  // orders spread over them as sites behind a load balancer would.
  const endpoints = spec.endpoints.map((_, i) => spec.endpoints[(i + k) % spec.endpoints.length]!);
  const c = new Connector({ endpoints, siteId: s.id, secret: s.secret, logger, transport: 'websocket', localAddress: s.address });
  const row = { c, connectedAt: 0, limited: 0, lostAt: 0 };
  c.on('connected', () => (row.connectedAt = Date.now()));
  c.on('disconnected', () => (row.lostAt = Date.now()));
  c.on('refused', (err: { status?: number }) => {
    if (err.status === 429) row.limited++;
  });
  return { id: s.id, row };
});

createServer((req, res) => {
  if (req.url !== '/status') return res.writeHead(404).end();
  const out: SiteStatus[] = sites.map(({ id, row }) => [id, row.c.state, row.c.state === 'connected' ? (row.c.node ?? null) : null, row.c.standbyNode ?? null, row.connectedAt, row.limited, row.c.websocketData ?? null, row.lostAt]);
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
}).listen(spec.statusPort, '127.0.0.1', () => {
  // All at once, as after a power cut at every site: the start is part of what is measured.
  for (const { row } of sites) row.c.start();
});

// This process's own stalls, logged: to the nodes they look like thousands of silent connectors.
const lag = new LoopLag(100, 5000).start();
setInterval(() => {
  const worstMs = Math.round(lag.worstMs());
  if (worstMs > 1000) logger.warn({ worstMs }, 'load connector event loop ran late (last 5 s)');
}, 5000).unref();

const stop = () => void Promise.all(sites.map(({ row }) => row.c.stop())).finally(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
