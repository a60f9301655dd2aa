// A node that fences while a standby connector's promotion is in flight must attach that
// connection anew when it rejoins, like every other primary it keeps through a fence. Found
// in a 10,000-site storm: the survivor fenced (a stall) while its promotions awaited Valkey,
// and 302 sites stayed online by their connectors' view with no owner, routed to nothing.
// The control channel alone, its site actors and Valkey records faked: which step is slow
// (here, the promoted standby's record cleared last) is chosen by the test.
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocket } from 'ws';
import { systemClock } from '../../core/clock.ts';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { ControlChannel, CONTROL_PATH, type SiteActors, type StandbyRecords } from '../../gateways/connector/control.ts';
import { issueConnectorToken } from '../../gateways/connector/token.ts';
import { TunnelRegistry } from '../../gateways/connector/tunnels.ts';
import { LocalTunnels } from '../../gateways/connector/tunnel-control.ts';
import { PROTOCOL_VERSION, ROLE_HEADER } from '../../protocol/connector.ts';
import { until } from '../harness/until.ts';

const secret = new Secret('promote-fence-test-secret');

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

t.test('a promotion in flight when the node fences is attached anew when it rejoins', async (t) => {
  const siteId = randomUUID();
  const steps: string[] = [];
  const attached = deferred();
  const clearHeld = deferred();
  const host: SiteActors = {
    claimHere: async (_kind, _id, opts) => (steps.push(opts?.takeFromLive === false ? 'claim if free' : 'claim'), 1),
    deliverLocal: async (_kind, _id, msg) => {
      steps.push(msg.type);
      if (msg.type === 'attach') attached.resolve();
      return {};
    },
    release: async () => void steps.push('release'),
    ask: async () => true, // the primary's actor vouches for the standby
  };
  const standbys: StandbyRecords = {
    set: async () => {},
    // The promoted standby's record is cleared last, and slowly: Valkey behind a stalled loop.
    clear: () => clearHeld.promise,
  };
  const channel = new ControlChannel({ secret, host, tunnels: new LocalTunnels(new TunnelRegistry(), createLogger({ level: 'silent' })), standbys, nodeId: 'node-2', clock: systemClock, logger: createLogger({ level: 'silent' }), accepting: () => true });
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  channel.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => server.close(r)));

  const token = issueConnectorToken(secret, siteId, 1, 60_000);
  const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}${CONTROL_PATH}`, { headers: { authorization: `Bearer ${token}`, [ROLE_HEADER]: 'standby' } });
  t.teardown(() => ws.terminate());
  const messages: Array<{ type: string; role?: string }> = [];
  ws.on('message', (m) => messages.push(JSON.parse(String(m))));
  let closed: number | undefined;
  ws.on('close', (code) => (closed = code));
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'register', connectorVersion: 'test', transports: ['websocket'], role: 'standby' }));
  await until(async () => messages.some((m) => m.type === 'registered' && m.role === 'standby'), 5000, 'standing by');

  // The primary's node died: the connector promotes its standby here.
  ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'promote' }));
  await attached.promise;
  t.same(steps, ['claim', 'attach'], 'claimed and attached; the standby record still being cleared');

  // Now the node fences (its actors stop, the site's with them) and rejoins.
  channel.keepThroughFence();
  await channel.reattachAll();
  t.same(steps, ['claim', 'attach', 'claim if free', 'attach'], 'the promoted connection was claimed and attached anew on rejoining');

  clearHeld.resolve();
  await new Promise((r) => setTimeout(r, 100));
  t.equal(closed, undefined, 'the connection stays open, its site held here');
  t.notOk(steps.includes('release'), 'the site was never released');
});
