// Liveness and readiness for load balancers and orchestrators.
// /healthz: the process is alive and its event loop turns (always 200 while it serves).
// /readyz:  200 only while the node is running, PostgreSQL and Valkey answer and migrations
//           are done; 503 with the failing checks otherwise (starting, draining, outage).
import type { FastifyInstance } from 'fastify';
import type { ReadinessReport } from '../../supervisors/readiness.ts';

export function registerHealthRoutes(app: FastifyInstance, readiness: () => ReadinessReport) {
  app.get('/healthz', async () => ({ status: 'alive' }));
  app.get('/readyz', async (_req, reply) => {
    const report = readiness();
    if (report.ready) return { status: 'ready', ...report };
    return reply.code(503).send({ status: 'not_ready', code: 'CLUSTER_ERR_NODE_NOT_READY', ...report });
  });
}
