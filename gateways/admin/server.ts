// The admin gateway: one Fastify server per node for the REST API, connector control
// WebSocket and health endpoints. It validates, hands work to actors or persistence, and
// maps replies and coded errors; it holds no business rules.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { ClusterError, isClusterError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Address } from '../../cluster.config.ts';
import type { ReadinessReport } from '../../supervisors/readiness.ts';
import type { Registry } from 'prom-client';
import { registerHealthRoutes } from './health.ts';

export interface AdminGatewayDeps {
  logger: Logger;
  readiness: () => ReadinessReport;
  metrics: Registry;
}

export function createAdminGateway(deps: AdminGatewayDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'admin' }) as FastifyBaseLogger,
    disableRequestLogging: true,
    bodyLimit: 1024 * 1024,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });
  app.setErrorHandler((err, req, reply) => {
    if (isClusterError(err)) {
      if ((err.status ?? 500) >= 500) req.log.warn({ code: err.code, err: err.message }, 'request failed');
      return reply.code(err.status ?? 500).send(err.toJSON());
    }
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    if (status >= 500) {
      req.log.error({ err }, 'unhandled error');
      return reply.code(500).send(new ClusterError('CLUSTER_ERR_API_INTERNAL', 'internal error', {}).toJSON());
    }
    // Fastify's own 4xx (bad JSON, body too large, ...): keep its status, use our code.
    const reason = (err as { code?: string }).code ?? 'invalid';
    return reply.code(status).send(new ClusterError('CLUSTER_ERR_API_BAD_REQUEST', (err as Error).message, { reason }).toJSON());
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send(new ClusterError('CLUSTER_ERR_API_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`, {}).toJSON()),
  );
  registerHealthRoutes(app, deps.readiness);
  app.get('/metrics', async (_req, reply) => reply.type(deps.metrics.contentType).send(await deps.metrics.metrics()));
  return app;
}

export async function listenAdmin(app: FastifyInstance, bind: Address): Promise<void> {
  await app.listen({ host: bind.host, port: bind.port });
}
