// `cluster chaos`: proves a cluster started by `cluster up` survives its nodes dying.
// Drives steady traffic (DNS-resolved HTTPS requests to the demo resource, admin writes
// through the load balancer) while it SIGKILLs, SIGSTOPs or restarts a random node every
// `killEvery` seconds, through the launcher's control socket. It watches every actor on
// every node the whole time, then checks PostgreSQL: every acknowledged write must be
// there, and no probe actor may have written with an older epoch after a newer one (an actor
// that ran twice). Prints a live timeline, a report, and one JSON line last.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ClusterError } from '../../core/errors.ts';
import { adminCall } from '../admin-client.ts';
import { controlCall, type ClusterInfo } from '../control.ts';
import { ActorObserver, allRunning } from './observer.ts';
import { applyFault, DnsFollow, healFault, isNetworkMode, NETWORK_MODES } from './network.ts';
import { chargedTo, fmtS, longest, outages, percentile, seededRandom, type ChaosEvent, type FaultFindings, type Mode } from './report.ts';
import { StubResolver } from './resolver.ts';
import { AdminWrites, ResourceTraffic } from './traffic.ts';

export interface ChaosOptions {
  dataDir: string;
  durationS: number;
  killEveryS: number;
  modes: Mode[];
  seed: number;
  /** Probe actors placed for the run (they heartbeat through fenced writes). @default 60 */
  probes?: number;
  say: (line: string) => void;
}

export interface ChaosSummary {
  bench: 'chaos';
  duration_s: number;
  kills: number;
  requests: number;
  failed: number;
  longest_outage_ms: number;
  /** 99th percentile time of the successful requests (DNS lookup included) */
  p99_ms: number;
  /** the longest any watched actor ran on no live node (sampled every 250 ms) */
  longest_actor_down_ms: number;
  writes_acked: number;
  writes_failed: number;
  lost_writes: number;
  /** actors seen running on two nodes in two samples in a row */
  duplicates: number;
  /** the longest such an actor was seen on two nodes (ms; 0 when none) */
  longest_duplicate_ms: number;
  /** fenced writes accepted from an owner after its successor had written */
  stale_writes: number;
  /** network faults among the disruptions */
  faults: number;
  /** 99th percentile, over faults that made a node named in DNS unreachable, of how long DNS still named it */
  dns_follow_ms_p99: number;
  /** faults that kept a node from Valkey for longer than its lease without it fencing itself (must be 0) */
  unfenced: number;
  /** faults after which the node did not hold its lease again within 60 s of healing (must be 0) */
  not_rejoined: number;
  seed: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitReady(adminUrl: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status === 200, () => false);
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${adminUrl} not ready after ${timeoutMs} ms`);
}

export async function runChaos(o: ChaosOptions): Promise<ChaosSummary> {
  const say = o.say;
  const socket = join(o.dataDir, 'control.sock');
  const info = await controlCall<ClusterInfo>(socket, { op: 'info' }, 5000);
  if (o.modes.includes('valkey-failover') && !info.valkeyReplica) throw new Error('--modes valkey-failover needs a cluster started with `cluster up --valkey-replica` (a primary, a replica and three Sentinels)');
  const network = o.modes.filter(isNetworkMode);
  if (network.length && !info.netns) throw new ClusterError('CLUSTER_ERR_NETNS_UNAVAILABLE', `--modes ${network.join(',')} cut the network between namespaces: start the cluster with \`cluster up --netns\` (root)`, { reason: 'no --netns' });
  const secrets = JSON.parse(readFileSync(join(o.dataDir, 'secrets.json'), 'utf8')) as { clusterSecret: string; adminEmail: string; adminPassword: string };
  const stopped = info.nodes.filter((n) => !n.alive).map((n) => n.id);
  if (stopped.length) throw new Error(`start from a whole cluster: ${stopped.join(', ')} not running`);
  await Promise.all(info.nodes.map((n) => waitReady(n.admin, 10_000)));
  const nodeIds = info.nodes.map((n) => n.id);
  const rand = seededRandom(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

  const login = await adminCall(info.adminUrl, 'POST', '/api/v1/auth/login', { email: secrets.adminEmail, password: secrets.adminPassword });
  if (login.status !== 200) throw new Error(`admin login failed: HTTP ${login.status}`);
  const cookie = login.cookie!;
  const runId = `${o.seed}-${Date.now().toString(36)}`;
  const org = await adminCall(info.adminUrl, 'POST', '/api/v1/orgs', { slug: `chaos-${runId}`, name: `Chaos ${runId}` }, cookie);
  if (org.status !== 201) throw new Error(`could not create the chaos org: ${JSON.stringify(org.body)}`);
  const db = new pg.Client({ connectionString: info.postgresUrl });
  await db.connect();
  const probeIds = Array.from({ length: o.probes ?? 60 }, (_, i) => `chaos-${runId}-${i}`);
  // With --netns the observer watches from the one address no fault drops: it sees inside a node cut off from everything else.
  const observer = new ActorObserver({ nodes: info.nodes, clusterSecret: secrets.clusterSecret, localAddress: info.netns?.observer });
  const resolver = new StubResolver(info.nodes.map((n) => n.dns));
  const dnsFollow = new DnsFollow(info.nodes.map((n) => ({ id: n.id, resolver: new StubResolver([n.dns]) })), info.hostname);
  let traffic: ResourceTraffic | undefined;
  let writes: AdminWrites | undefined;
  let aborted = false;
  const onInt = () => {
    if (aborted) process.exit(130);
    aborted = true;
    say('interrupted: finishing the current disruption, then reporting (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onInt);
  let ticker: NodeJS.Timeout | undefined;
  try {
    await db.query('INSERT INTO probe_actors (id, heartbeat_ms) SELECT unnest($1::text[]), 1000', [probeIds]);
    observer.start();
    const probeKeys = probeIds.map((id) => `probe/${id}`);
    say(`placing ${probeIds.length} probe actors (heartbeats are fenced writes)`);
    if (!(await observer.until((s) => allRunning(s, probeKeys), 30_000))) throw new Error('the probe actors were not all placed within 30 s');
    const everything = new Set<string>();
    for (const set of observer.latest!.byNode.values()) for (const a of set) everything.add(a);
    observer.watch(everything);

    const t0 = Date.now();
    const at = () => Date.now() - t0;
    const stamp = () => `+${fmtS(at()).padStart(6)}`;
    const ca = readFileSync(info.caFile, 'utf8');
    const load = new ResourceTraffic({ hostname: info.hostname, ca, expect: /hello from the demo site/, resolver, t0, intervalMs: 50, timeoutMs: 3000, maxInFlight: 20 });
    const admin = new AdminWrites({ base: info.adminUrl, cookie, orgId: org.body.id, writers: 4, intervalMs: 500, timeoutMs: 5000 });
    [traffic, writes] = [load, admin];
    load.start();
    admin.start();
    say(`${stamp()}  traffic: https://${info.hostname} resolved through ${info.nodes.length} name servers (20/s), site creations through ${info.adminUrl} (8/s); ${everything.size} actors on ${nodeIds.length} nodes`);
    let seenFailed = 0;
    ticker = setInterval(() => {
      const failed = load.samples.filter((s) => !s.ok);
      const last = failed.at(-1);
      const counts = observer.latest ? nodeIds.map((id) => `${id} ${observer.latest!.byNode.get(id)?.size ?? '-'}`).join(', ') : '';
      say(`${stamp()}  requests ${load.samples.length - failed.length} ok / ${failed.length} failed, writes ${admin.acked.length} acked / ${admin.failed} failed; actors: ${counts}${failed.length > seenFailed && last ? `; last failure: ${last.error}` : ''}`);
      seenFailed = failed.length;
    }, 5000);

    const events: ChaosEvent[] = [];
    const disrupt = async (n: number, mode: Mode, node: string): Promise<ChaosEvent> => {
      // A Valkey failover touches every node: all actors are watched.
      const before = node === 'valkey' ? [...everything] : [...(observer.latest?.byNode.get(node) ?? [])];
      const nodeAdmin = info.nodes.find((x) => x.id === node)?.admin ?? '';
      const start = Date.now();
      const holdMs = mode === 'restart' ? 0 : Math.round(1000 + rand() * Math.max(0, o.killEveryS * 600 - 1000));
      let back = false;
      const recovery = observer.until((s) => s.at > start && allRunning(s, before, back ? undefined : node), 90_000);
      const what = isNetworkMode(mode) ? `network fault on ${node} for ${fmtS(holdMs)}` : { kill: `SIGKILL ${node}, restart after ${fmtS(holdMs)}`, stop: `SIGSTOP ${node} for ${fmtS(holdMs)}`, restart: `restart ${node} (SIGTERM, start again)`, 'valkey-failover': `SIGKILL the Valkey primary, start it again after ${fmtS(holdMs)}` }[mode];
      say(`${stamp()}  #${n} ${what}; it runs ${before.length} actors`);
      let fault: FaultFindings | undefined;
      if (isNetworkMode(mode)) {
        const applied = await applyFault(socket, mode, node, nodeIds, rand);
        say(`${stamp()}  #${n} ${applied.what}`);
        const held = sleep(holdMs);
        const address = info.nodes.find((x) => x.id === node)!.ip;
        const follow = applied.unreachable ? dnsFollow.follow(node, address, start, held) : Promise.resolve(null);
        // Fenced: a sample in which the node answered without a lease, during the fault or until it holds one again.
        let fenced = false;
        const unwatch = observer.onSample((s) => void (s.at > start && s.byNode.has(node) && !s.healthy.has(node) && (fenced = true)));
        await held;
        await healFault(socket, node);
        const healedAt = Date.now();
        const rejoined = await observer.until((s) => s.at > healedAt && s.healthy.has(node), 60_000);
        unwatch();
        await waitReady(nodeAdmin, 60_000);
        fault = { dnsFollowMs: await follow, fenced: applied.losesLease || fenced ? fenced : null, rejoinedMs: rejoined ? rejoined.at - healedAt : null };
      } else if (mode === 'valkey-failover') {
        const { port } = (await controlCall(socket, { op: 'valkey-kill' })) as { port: number };
        say(`${stamp()}  #${n} killed the Valkey primary on port ${port}`);
        await sleep(holdMs);
        await controlCall(socket, { op: 'valkey-start' });
        for (const x of info.nodes) await waitReady(x.admin, 60_000);
      } else if (mode === 'kill') {
        await controlCall(socket, { op: 'signal', node, signal: 'SIGKILL' });
        await sleep(holdMs);
        await controlCall(socket, { op: 'start', node });
      } else if (mode === 'stop') {
        await controlCall(socket, { op: 'signal', node, signal: 'SIGSTOP' });
        await sleep(holdMs);
        await controlCall(socket, { op: 'signal', node, signal: 'SIGCONT' });
        await waitReady(nodeAdmin, 60_000);
      } else {
        await controlCall(socket, { op: 'signal', node, signal: 'SIGTERM' });
        await controlCall(socket, { op: 'wait-exit', node });
        await controlCall(socket, { op: 'start', node });
      }
      const backMs = Date.now() - start;
      // What the others had not taken over in the last sample before the node was back.
      const last = observer.latest;
      const missing = last && last.at > start ? before.filter((a) => !allRunning(last, [a], node)) : [];
      back = true;
      const done = await recovery;
      const recoveredMs = done ? done.at - start : null;
      if (recoveredMs !== null && recoveredMs <= backMs) missing.length = 0; // taken over before it was back
      say(`${stamp()}  #${n} ${node} back after ${fmtS(backMs)}; its ${before.length} actors ${recoveredMs === null ? 'NOT all running again within 90 s' : `running again after ${recoveredMs} ms`}${missing.length ? `; not yet running elsewhere at +${fmtS(last!.at - t0)}: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}` : ''}`);
      return { n, mode, node, at: start - t0, holdMs, actors: before.length, recoveredMs, backMs, ...(fault ? { fault } : {}) };
    };

    const round: Mode[] = [];
    for (let tick = o.killEveryS * 1000; tick < o.durationS * 1000 && !aborted; tick += o.killEveryS * 1000) {
      while (at() < tick && !aborted) await sleep(Math.min(200, tick - at()));
      if (aborted) break;
      // Every mode once per round, in a seeded order: a short run still meets each of them.
      if (round.length === 0) {
        round.push(...o.modes);
        for (let i = round.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [round[i], round[j]] = [round[j]!, round[i]!];
        }
      }
      const mode = round.shift()!;
      let victim = mode === 'valkey-failover' ? 'valkey' : pick(nodeIds);
      // A fault that hides a node from clients hits the node DNS names for the demo site: the
      // case where DNS has something to follow (any other node's loss is covered by the others).
      if (mode === 'isolate' || mode === 'one-way') {
        const named = await resolver.resolve4(info.hostname).catch(() => [] as string[]);
        victim = info.nodes.find((x) => named.includes(x.ip))?.id ?? victim;
      }
      events.push(await disrupt(events.length + 1, mode, victim));
    }
    while (at() < o.durationS * 1000 && !aborted) await sleep(Math.min(200, o.durationS * 1000 - at()));
    const endAt = at();
    clearInterval(ticker);
    await Promise.all([load.stop(), admin.stop()]);
    say(`${stamp()}  traffic stopped; waiting for every actor to run once`);
    const healed = await observer.until((s) => allRunning(s, everything) && nodeIds.every((id) => s.healthy.has(id)), 60_000);
    await sleep(500); // two more samples for the duplicate check
    await observer.stop();
    // Actor gaps on the run's clock, those never closed ending now.
    const gaps = [...observer.gaps, ...observer.openGaps(Date.now())].map((g) => ({ ...g, from: g.from - t0, to: g.to - t0 }));

    // What PostgreSQL says.
    const found = (await db.query<{ id: string }>('SELECT id FROM sites WHERE id = ANY($1::uuid[])', [admin.acked])).rows.length;
    const stale = Number((await db.query<{ n: string }>(`
      SELECT count(*) AS n FROM (
        SELECT epoch, max(epoch) OVER (PARTITION BY probe_id ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newest_before
        FROM probe_messages WHERE probe_id = ANY($1::text[])) m
      WHERE epoch < newest_before`, [probeIds])).rows[0]!.n);
    const beats = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM probe_messages WHERE probe_id = ANY($1::text[])', [probeIds])).rows[0]!.n);

    const all = outages(load.samples, endAt);
    const failed = load.samples.filter((s) => !s.ok).length;
    const longestOutage = longest(all);
    const okMs = load.samples.filter((s) => s.ok).map((s) => s.ms);
    const p50 = percentile(okMs, 50);
    const p99 = percentile(okMs, 99);
    const lost = admin.acked.length - found;
    const duplicateSpans = [...observer.duplicateSpans, ...observer.openDuplicates(Date.now())];
    // A fault that cost the lease and lasted past it, yet the node never showed itself fenced.
    const unfenced = events.filter((e) => e.fault?.fenced === false && e.holdMs > (info.leaseTtlMs ?? Infinity)).length;
    const follows = events.flatMap((e) => (e.fault?.dnsFollowMs != null ? [e.fault.dnsFollowMs < 0 ? e.holdMs : e.fault.dnsFollowMs] : []));

    say('\nreport');
    say(`  disruptions      ${events.length} (${(['kill', 'stop', 'restart', 'valkey-failover', ...NETWORK_MODES] as const).filter((m) => ['kill', 'stop', 'restart'].includes(m) || o.modes.includes(m)).map((m) => `${events.filter((e) => e.mode === m).length} ${m}`).join(', ')})`);
    for (const [i, e] of events.entries()) {
      const os = chargedTo(events, all, i, (o) => o.seenAt);
      const down = chargedTo(events, gaps, i, (g) => g.from);
      const settled = e.recoveredMs === null ? 'not all running within 90 s' : `all running after ${e.recoveredMs} ms`;
      const f = e.fault;
      const found = f ? `; ${f.dnsFollowMs === null ? 'DNS did not name it' : f.dnsFollowMs < 0 ? 'DNS STILL NAMED IT when the fault healed' : `DNS stopped naming it after ${f.dnsFollowMs} ms`}${f.fenced === null ? '' : f.fenced ? ', it fenced itself' : ', not fenced'}, ${f.rejoinedMs === null ? 'NOT holding its lease 60 s after healing' : `lease held ${f.rejoinedMs} ms after healing`}` : '';
      say(`    #${e.n} ${e.mode.padEnd(7)} ${e.node}  at ${fmtS(e.at)} for ${fmtS(e.holdMs)}: ${e.actors} actors ${settled}, ${down.length ? `${new Set(down.map((g) => g.actor)).size} down for up to ${longest(down)} ms` : 'none seen down'}; requests ${os.length ? `failed for ${longest(os)} ms (${os.reduce((a, x) => a + x.failed, 0)} failed)` : 'unaffected'}${found}`);
    }
    say(`  requests         ${load.samples.length - failed} ok, ${failed} failed; longest outage ${longestOutage} ms; answered in p50 ${p50} ms, p99 ${p99} ms, slowest ${Math.max(0, ...okMs)} ms`);
    const reasons = new Map<string, number>();
    // Causes grouped without the node address or the remaining time in them.
    const cause = (e: string) => e.replace(/\d+\.\d+\.\d+\.\d+/g, 'a node').replace(/after \d+ ms/g, 'after the deadline');
    for (const s of load.samples) if (!s.ok) reasons.set(cause(s.error!), (reasons.get(cause(s.error!)) ?? 0) + 1);
    for (const [r, c] of [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 5)) say(`                   ${c} × ${r}`);
    say(`  admin writes     ${admin.acked.length} acknowledged, ${found} of them found in PostgreSQL (lost: ${lost}); ${admin.failed} not acknowledged${admin.failed ? ` (${[...admin.failures].map(([r, c]) => `${c} × ${r}`).join(', ')})` : ''}`);
    say(`  actors           ${everything.size} watched on every node every 250 ms; longest any ran on no live node: ${longest(gaps)} ms; duplicates seen running: ${observer.duplicates.size}${observer.duplicates.size ? ` (${duplicateSpans.slice(0, 5).map((d) => `${d.what} from +${fmtS(d.from - t0)} for ${d.to - d.from} ms`).join('; ')}), the longest for ${longest(duplicateSpans)} ms` : ''}`);
    say(`  fenced writes    ${beats} probe heartbeats; written by a stale owner after its successor: ${stale}`);
    say(`  healed           ${healed ? 'every actor running once, every node holding its lease' : 'NOT healed within 60 s'}`);
    say(`  replay           cluster chaos --duration ${o.durationS} --kill-every ${o.killEveryS} --modes ${o.modes.join(',')} --seed ${o.seed}`);
    if (follows.length) say(`  DNS follow       over ${follows.length} faults that hid a named node: p99 ${percentile(follows, 99)} ms, longest ${Math.max(...follows)} ms`);
    return {
      bench: 'chaos', duration_s: Math.round(endAt / 1000), kills: events.length, requests: load.samples.length, failed, longest_outage_ms: longestOutage, p99_ms: p99, longest_actor_down_ms: longest(gaps),
      writes_acked: admin.acked.length, writes_failed: admin.failed, lost_writes: lost, duplicates: observer.duplicates.size, longest_duplicate_ms: longest(duplicateSpans), stale_writes: stale,
      faults: events.filter((e) => isNetworkMode(e.mode)).length, dns_follow_ms_p99: percentile(follows, 99), unfenced, not_rejoined: events.filter((e) => e.fault && e.fault.rejoinedMs === null).length, seed: o.seed,
    };
  } finally {
    clearInterval(ticker);
    process.off('SIGINT', onInt);
    await Promise.all([traffic?.stop(), writes?.stop(), observer.stop()]);
    // Leave the cluster as we found it: no frozen or dead node, no chaos data.
    for (const n of nodeIds) await controlCall(socket, { op: 'signal', node: n, signal: 'SIGCONT' }).catch(() => {});
    if (info.netns) for (const n of nodeIds) await healFault(socket, n).catch(() => {});
    const current = await controlCall<ClusterInfo>(socket, { op: 'info' }, 5000).catch(() => undefined);
    for (const n of current?.nodes.filter((x) => !x.alive) ?? []) await controlCall(socket, { op: 'start', node: n.id }).catch(() => {});
    await adminCall(info.adminUrl, 'DELETE', `/api/v1/orgs/${org.body.id}`, undefined, cookie).catch(() => {});
    await db.query('DELETE FROM probe_actors WHERE id = ANY($1::text[])', [probeIds]).catch(() => {});
    await db.end().catch(() => {});
  }
}
