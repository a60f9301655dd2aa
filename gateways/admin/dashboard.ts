// The dashboard: the single-page app built into ui/dist (`npm run ui:build`, run by the
// bootstrap), served by every node's admin gateway at `/`. Hashed assets are cached for a year;
// index.html never, so a new build reaches browsers at once. The Content Security Policy allows
// only this origin's scripts and styles (the build has no inline ones) and API calls to it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { ClusterError } from '../../core/errors.ts';

export const UI_DIST = fileURLToPath(new URL('../../ui/dist', import.meta.url));

export const DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS = {
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
};

export async function registerDashboard(app: FastifyInstance): Promise<void> {
  const index = join(UI_DIST, 'index.html');
  if (!existsSync(index)) {
    // Loud, not blank: the API works, the page says how to build it.
    app.get('/', { schema: { hide: true } }, async () => {
      throw new ClusterError('CLUSTER_ERR_UI_NOT_BUILT', 'the dashboard is not built on this node: run `npm run ui:build` (the bootstrap does)', {});
    });
    return;
  }
  const html = readFileSync(index);
  await app.register(fastifyStatic, {
    root: join(UI_DIST, 'assets'),
    prefix: '/assets/',
    index: false,
    immutable: true,
    maxAge: 365 * 24 * 3600 * 1000,
    setHeaders: (res) => {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.header(k, v);
    },
  });
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.headers({ ...SECURITY_HEADERS, 'cache-control': 'no-cache' }).type('text/html; charset=utf-8').send(html));
}
