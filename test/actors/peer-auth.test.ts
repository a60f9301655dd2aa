import pg from 'pg';
import t from 'tap';
import { WebSocket } from 'ws';
import { Secret } from '../../core/secret.ts';
import { authHeaders, PEER_PATH, ReplayCache } from '../../protocol/peer.ts';
import { askVia, startCluster } from '../harness/cluster.ts';
import { peerTlsFiles } from '../harness/peer-tls.ts';

function tryConnect(url: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.on('open', () => (ws.close(), resolve('open')));
    ws.on('unexpected-response', (_req, res) => resolve(`http ${res.statusCode}`));
    ws.on('error', (err) => resolve(`error ${err.message}`));
  });
}

t.test('the peer link refuses anyone without the cluster secret, replays, and requests signed for another node, path or method', async (t) => {
  const cluster = await startCluster(t, 1);
  const node = cluster.nodes[0]!;
  const id = String(node.config.nodeId);
  const secret = new Secret(node.config.clusterSecret);
  const me = { node: 'tester', incarnation: '1' };
  const url = `ws://${node.config.peer.bind}${PEER_PATH}`;
  const signed = (req: { method?: string; path?: string; target?: string } = {}, now?: number) =>
    authHeaders(secret, me, { method: req.method ?? 'GET', path: req.path ?? PEER_PATH, target: req.target ?? id }, now);
  t.equal(await tryConnect(url, {}), 'http 401', 'no credentials');
  t.equal(await tryConnect(url, authHeaders(new Secret('wrong-secret-wrong-secret-wrong-secret'), me, { method: 'GET', path: PEER_PATH, target: id })), 'http 401', 'wrong secret');
  t.equal(await tryConnect(url, signed({}, Date.now() - 120_000)), 'http 401', 'an old signature');
  t.equal(await tryConnect(url, { ...signed(), 'x-cluster-node': 'someone-else' }), 'http 401', 'signature bound to the identity');
  t.equal(await tryConnect(url, signed({ target: 'node-9' })), 'http 401', 'signed for another node');
  const good = signed();
  t.equal(await tryConnect(url, good), 'open', 'the right secret gets in');
  t.equal(await tryConnect(url, good), 'http 401', 'the same request again is a replay');

  const peerHttp = (path: string, headers: Record<string, string>, method = 'GET', body?: string) =>
    fetch(`http://${node.config.peer.bind}${path}`, { method, headers: { ...headers, 'content-type': 'application/json' }, body });
  t.equal((await peerHttp(`${PEER_PATH}/node`, signed())).status, 401, 'signed for the link, used on another path');
  const ask = JSON.stringify({ kind: 'probe', id: 'x', msg: { type: 'ping' }, timeoutMs: 300 });
  t.not((await peerHttp(`${PEER_PATH}/ask`, signed({ method: 'POST', path: `${PEER_PATH}/ask` }), 'POST', ask)).status, 401, 'a request signed for what it does is accepted');
  t.equal((await peerHttp(`${PEER_PATH}/ask`, signed({ method: 'GET', path: `${PEER_PATH}/ask` }), 'POST', ask)).status, 401, 'signed as a GET, sent as a POST');
  t.equal((await peerHttp(`${PEER_PATH}/txt?name=a.example`, signed({ path: `${PEER_PATH}/txt?name=b.example` }))).status, 401, 'the query is covered too');

  const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
    const ws = new WebSocket(url, { headers: signed() });
    ws.on('open', () => ws.send('{"t":"ask","rid":-1}'));
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  t.same(closed, { code: 1008, reason: 'CLUSTER_ERR_PEER_BAD_MESSAGE' });
  const unauth = await fetch(`http://${node.config.peer.bind}${PEER_PATH}/node`);
  t.equal(unauth.status, 401);
  t.match(await unauth.json(), { code: 'CLUSTER_ERR_PEER_AUTH_FAILED' });
  t.match(await askVia(node, 'probe', 'x', { type: 'ping' }, 300), { status: 503, body: { code: 'CLUSTER_ERR_ACTOR_UNREACHABLE' } }, 'an actor that does not exist is unreachable after the retry bound');
});

t.test('the replay cache forgets nonces once their timestamps are too old to be accepted anyway', async (t) => {
  const cache = new ReplayCache();
  t.ok(cache.fresh('a', 0));
  t.notOk(cache.fresh('a', 1000), 'a replay within the window');
  t.ok(cache.fresh('b', 30_000));
  t.ok(cache.fresh('c', 61_000), 'later');
  t.equal(cache.size, 2, 'the nonce from outside the window is gone');
});

t.test('with the cluster CA configured the peer link runs over TLS, and plain connections get nowhere', async (t) => {
  const files = peerTlsFiles(t, ['node-1', 'node-2']);
  const cluster = await startCluster(t, 2, {}, (i) => ({ peer: files(`node-${i + 1}`) }));
  const ids = Array.from({ length: 8 }, (_, i) => `tls-${i}`);
  const db = new pg.Client({ connectionString: cluster.postgresUrl });
  await db.connect();
  await db.query('INSERT INTO probe_actors (id) SELECT unnest($1::text[])', [ids]);
  await db.end();
  // Asked through node-1, the actors on node-2 answer over the TLS peer link.
  const answers = await Promise.all(ids.map(async (id) => {
    for (let i = 0; i < 100; i++) {
      const r = await askVia(cluster.nodes[0]!, 'probe', id, { type: 'ping' }, 3000);
      if (r.status === 200) return r.body.value.node as string;
      await new Promise((res) => setTimeout(res, 100));
    }
    return 'unreachable';
  }));
  t.notOk(answers.includes('unreachable'), 'every probe answered');
  t.ok(answers.includes('node-2'), `some answered from node-2: ${answers.join(', ')}`);
  const node = cluster.nodes[0]!;
  const plain = await tryConnect(`ws://${node.config.peer.bind}${PEER_PATH}`, authHeaders(new Secret(node.config.clusterSecret), { node: 't', incarnation: '1' }, { method: 'GET', path: PEER_PATH, target: 'node-1' }));
  t.not(plain, 'open', `plain WebSocket to the TLS port: ${plain}`);
});
