// The admin gateway: one Fastify server per node for the REST API (/api/v1), its OpenAPI
// document and docs page, health and metrics. It validates, authorizes, writes through
// persistence (one transaction + audit row per write) and maps coded errors; it holds no
// business rules. API routes exist from the start and answer 503 until the node is ready.
import cookie from '@fastify/cookie';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import { Counter, Histogram, type Registry } from 'prom-client';
import { ClusterError, isClusterError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Address } from '../../cluster.config.ts';
import type { ReadinessReport } from '../../supervisors/readiness.ts';
import { authenticate } from './auth.ts';
import { registerDashboard } from './dashboard.ts';
import { registerHealthRoutes } from './health.ts';
import type { ApiDeps } from './http.ts';
import { accessRoutes } from './routes/access.ts';
import { apiKeyRoutes } from './routes/api-keys.ts';
import { auditRoutes } from './routes/audit.ts';
import { twoFactorRoutes } from './routes/two-factor.ts';
import { identityRoutes } from './routes/identity.ts';
import { authRoutes } from './routes/auth.ts';
import { clusterRoutes } from './routes/cluster.ts';
import { connectorRoutes } from './routes/connector.ts';
import { domainRoutes } from './routes/domains.ts';
import { orgRoutes } from './routes/orgs.ts';
import { resourceRoutes } from './routes/resources.ts';
import { siteRoutes } from './routes/sites.ts';
import { userRoutes } from './routes/users.ts';

export interface AdminGatewayDeps {
  logger: Logger;
  readiness: () => ReadinessReport;
  metrics: Registry;
  /** Load balancer addresses whose forwarding headers are believed. */
  trustProxy: string[];
  /** The API's dependencies; undefined until the node has PostgreSQL and Valkey. */
  api: () => ApiDeps | undefined;
}

/** Turns Fastify's schema errors into one coded error naming the field. */
function validationError(err: FastifyError): ClusterError<'CLUSTER_ERR_API_VALIDATION'> {
  const first = err.validation?.[0];
  const params = (first?.params ?? {}) as { additionalProperty?: string; missingProperty?: string };
  const path = (first?.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
  const leaf = params.additionalProperty ?? params.missingProperty;
  const field = [err.validationContext ?? 'body', path, leaf].filter(Boolean).join('.');
  const problem = params.additionalProperty ? 'is not a known field' : params.missingProperty ? 'is required' : (first?.message ?? 'is invalid');
  return new ClusterError('CLUSTER_ERR_API_VALIDATION', `${field} ${problem}`, { field, problem });
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A browser sends the session cookie with requests another site makes it send; SameSite=Lax
 * alone still lets some through. A state-changing request authenticated by the cookie must
 * come from this origin: a browser says where it came from (Origin, Sec-Fetch-Site), and a
 * request from another site is refused. Clients without a browser send neither header and
 * hold their cookie themselves; API keys are never sent by a browser on its own.
 */
function assertSameOrigin(req: FastifyRequest) {
  if (SAFE_METHODS.has(req.method) || req.principal?.type !== 'user') return;
  const fetchSite = req.headers['sec-fetch-site'];
  const origin = req.headers.origin;
  let crossOrigin = fetchSite === 'cross-site' || fetchSite === 'same-site';
  if (!crossOrigin && origin !== undefined) {
    try {
      // Both as URLs, so a default port written out (":443") compares equal to one left out.
      crossOrigin = origin === 'null' || new URL(origin).host !== new URL(`${req.protocol}://${req.host}`).host;
    } catch {
      crossOrigin = true;
    }
  }
  if (crossOrigin) throw new ClusterError('CLUSTER_ERR_API_CROSS_ORIGIN', 'a cookie-authenticated change must come from this origin', { origin: String(origin ?? fetchSite) });
}

export async function createAdminGateway(deps: AdminGatewayDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'admin' }) as FastifyBaseLogger,
    // Per-request lines would drown the log: requests are counted in metrics instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    trustProxy: deps.trustProxy.length > 0 ? deps.trustProxy : false,
    // Unknown fields are errors (not silently dropped) and JSON types are never coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true } },
  });

  const requests = new Counter({ name: 'cluster_http_requests_total', help: 'Admin API requests by route and status', labelNames: ['method', 'route', 'status'], registers: [deps.metrics] });
  const latency = new Histogram({ name: 'cluster_http_request_duration_seconds', help: 'Admin API latency by route', labelNames: ['method', 'route'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [deps.metrics] });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    latency.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) return reply.code(400).send(validationError(err).toJSON());
    if (isClusterError(err)) {
      if ((err.status ?? 500) >= 500) req.log.warn({ code: err.code, err: err.message }, 'request failed');
      if (err.code === 'CLUSTER_ERR_API_RATE_LIMITED') reply.header('retry-after', Math.ceil((err.fields as { retryAfterMs: number }).retryAfterMs / 1000));
      return reply.code(err.status ?? 500).send(err.toJSON());
    }
    const status = err.statusCode ?? 500;
    if (status >= 500) {
      req.log.error({ err }, 'unhandled error');
      return reply.code(500).send(new ClusterError('CLUSTER_ERR_API_INTERNAL', 'internal error', {}).toJSON());
    }
    // Fastify's own 4xx (bad JSON, body too large, ...): keep its status, use our code.
    return reply.code(status).send(new ClusterError('CLUSTER_ERR_API_BAD_REQUEST', err.message, { reason: err.code ?? 'invalid' }).toJSON());
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send(new ClusterError('CLUSTER_ERR_API_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`, {}).toJSON()),
  );

  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      info: { title: 'Cluster admin API', version: '1' },
      components: { securitySchemes: { session: { type: 'apiKey', in: 'cookie', name: 'cluster_session' }, apiKey: { type: 'http', scheme: 'bearer' } } },
      security: [{ session: [] }, { apiKey: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/api/v1/docs' });

  const api = (): ApiDeps => {
    const d = deps.api();
    if (!d) throw new ClusterError('CLUSTER_ERR_NODE_NOT_READY', 'the node is starting', { state: deps.readiness().state });
    return d;
  };
  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith('/api/v1/') || req.url.startsWith('/api/v1/docs')) return;
    req.principal = await authenticate(api(), req);
    assertSameOrigin(req);
  });

  registerHealthRoutes(app, deps.readiness);
  await registerDashboard(app);
  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  authRoutes(app, api);
  twoFactorRoutes(app, api);
  identityRoutes(app, api);
  orgRoutes(app, api);
  userRoutes(app, api);
  siteRoutes(app, api);
  domainRoutes(app, api);
  resourceRoutes(app, api);
  accessRoutes(app, api);
  auditRoutes(app, api);
  apiKeyRoutes(app, api);
  clusterRoutes(app, api);
  connectorRoutes(app, api);
  return app;
}

export async function listenAdmin(app: FastifyInstance, bind: Address): Promise<void> {
  await app.listen({ host: bind.host, port: bind.port });
}
