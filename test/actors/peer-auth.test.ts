import t from 'tap';
import { WebSocket } from 'ws';
import { Secret } from '../../core/secret.ts';
import { authHeaders, PEER_PATH } from '../../protocol/peer.ts';
import { askVia, startCluster } from '../harness/cluster.ts';

function tryConnect(url: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.on('open', () => (ws.close(), resolve('open')));
    ws.on('unexpected-response', (_req, res) => resolve(`http ${res.statusCode}`));
    ws.on('error', (err) => resolve(`error ${err.message}`));
  });
}

t.test('the peer link refuses anyone without the cluster secret, and malformed messages close the link', async (t) => {
  const cluster = await startCluster(t, 1);
  const node = cluster.nodes[0]!;
  const url = `ws://${node.config.peer.bind}${PEER_PATH}`;
  const good = authHeaders(new Secret(node.config.clusterSecret), { node: 'tester', incarnation: '1' });
  t.equal(await tryConnect(url, {}), 'http 401', 'no credentials');
  t.equal(await tryConnect(url, authHeaders(new Secret('wrong-secret-wrong-secret-wrong-secret'), { node: 'tester', incarnation: '1' })), 'http 401', 'wrong secret');
  t.equal(await tryConnect(url, authHeaders(new Secret(node.config.clusterSecret), { node: 'tester', incarnation: '1' }, Date.now() - 120_000)), 'http 401', 'replayed old signature');
  t.equal(await tryConnect(url, { ...good, 'x-cluster-node': 'someone-else' }), 'http 401', 'signature bound to the identity');
  t.equal(await tryConnect(url, good), 'open', 'the right secret gets in');

  const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
    const ws = new WebSocket(url, { headers: good });
    ws.on('open', () => ws.send('{"t":"ask","rid":-1}'));
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  t.same(closed, { code: 1008, reason: 'CLUSTER_ERR_PEER_BAD_MESSAGE' });
  const unauth = await fetch(`http://${node.config.peer.bind}${PEER_PATH}/node`);
  t.equal(unauth.status, 401);
  t.match(await unauth.json(), { code: 'CLUSTER_ERR_PEER_AUTH_FAILED' });
  t.match(await askVia(node, 'probe', 'x', { type: 'ping' }, 300), { status: 503, body: { code: 'CLUSTER_ERR_ACTOR_UNREACHABLE' } }, 'an actor that does not exist is unreachable after the retry bound');
});
