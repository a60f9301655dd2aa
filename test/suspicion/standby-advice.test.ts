// The node a connector holds its standby tunnel to dies: the primary's node advises another
// (`standby-advice`), and the connector opens its standby there. Before, it kept dialling the
// dead node's address until its primary moved, a site without a second path for good when
// that node never came back.
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ServiceProcess } from '../../devenv/process.ts';
import { call, publishHttpResource, startApiCluster } from '../harness/api.ts';
import { until } from '../harness/until.ts';

const CONNECTOR_ENTRY = fileURLToPath(new URL('../../bin/cluster-connector.mjs', import.meta.url));

t.test("a standby's node dies: the connector opens its standby on the node advised next", async (t) => {
  const target = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  t.teardown(() => (target.closeAllConnections(), target.close()));
  const c = await startApiCluster(t, 3);
  const { base, site } = await publishHttpResource(c, { slug: 'sa', zone: 'sa.test', targetPort: (target.address() as { port: number }).port });
  const logFile = join(mkdtempSync(join(tmpdir(), 'standby-advice-')), 'connector.log');
  const connector = new ServiceProcess({
    name: 'connector', command: process.execPath, logFile,
    args: [CONNECTOR_ENTRY, ...c.nodes.flatMap((n) => ['--endpoint', n.adminUrl]), '--id', site.id, '--secret', site.connector.secret],
  });
  t.teardown(() => connector.stop('SIGTERM', 3000));
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const standbysUp = () => [...log().matchAll(/"standbyNode":"([^"]+)","node":"([^"]+)","msg":"standby tunnel up"/g)].map((m) => m[1]!);
  const owner = async () => (await call(c.lb, 'GET', `${base}/sites/${site.id}`, { cookie: c.adminCookie })).body?.status?.node as string | null;
  await until(async () => (await owner()) && standbysUp().length > 0, 30_000, 'the site online with a standby');
  const primary = (await owner())!;
  const standby = standbysUp().at(-1)!;
  const third = c.nodes.map((n) => String(n.config.nodeId)).find((id) => id !== primary && id !== standby)!;
  t.not(standby, primary);

  const before = standbysUp().length;
  await c.nodes.find((n) => n.config.nodeId === standby)!.proc.stop('SIGKILL', 1000);
  await until(() => standbysUp().length > before || undefined, 20_000, 'a standby up again');
  t.equal(standbysUp().at(-1), third, `the new standby is on ${third}, the one live node other than the primary`);
  t.equal(await owner(), primary, 'the primary never moved');
});
