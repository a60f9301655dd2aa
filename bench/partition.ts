// npm run bench:partition
// `cluster up --netns` in a scratch directory (each node, PostgreSQL and Valkey a network
// namespace of its own; root only), then `cluster chaos` with only network faults for 120 s
// (one every 10 s, each mode in turn in a seeded order: isolate, cut from Valkey, cut from
// PostgreSQL, cut from its peers, one-way, a lossy link), fixed seed. The timeline goes to
// stderr; the last line on stdout is the JSON summary. Exits non-zero when an invariant broke:
// a lost write, a duplicate actor, a stale fenced write, a node cut off from Valkey that did
// not fence itself, or one that did not rejoin.
import { NETWORK_MODES } from '../devenv/chaos/network.ts';
import { runChaos } from '../devenv/chaos/run.ts';
import { requireNetns } from '../devenv/netns.ts';
import { againstLocalCluster, log } from './lib.ts';
import { size } from './sizes.ts';

const DURATION_S = size('DURATION', 120, 30);
const KILL_EVERY_S = size('KILL_EVERY', 10, 5);
const SEED = Number(process.env.BENCH_SEED ?? 20261204);

requireNetns();
// A /24 of its own, so a second run (or the test suite's) does not meet this one.
const subnet = `10.${251 + Math.floor(Math.random() * 4)}.${Math.floor(Math.random() * 255)}`;
await againstLocalCluster({ netnsSubnet: subnet }, async (dataDir) => {
  log(`cluster up in namespaces on ${subnet}.0/24; network faults for ${DURATION_S} s, seed ${SEED}`);
  const s = await runChaos({ dataDir, durationS: DURATION_S, killEveryS: KILL_EVERY_S, modes: [...NETWORK_MODES], seed: SEED, say: log });
  const summary = {
    bench: 'partition',
    faults: s.faults,
    lost_writes: s.lost_writes,
    duplicates: s.duplicates,
    stale_writes: s.stale_writes,
    longest_outage_ms: s.longest_outage_ms,
    dns_follow_ms_p99: s.dns_follow_ms_p99,
    requests: s.requests,
    failed: s.failed,
    p99_ms: s.p99_ms,
    longest_actor_down_ms: s.longest_actor_down_ms,
    longest_duplicate_ms: s.longest_duplicate_ms,
    unfenced: s.unfenced,
    not_rejoined: s.not_rejoined,
    writes_acked: s.writes_acked,
    seed: s.seed,
  };
  return { summary, broken: s.lost_writes + s.duplicates + s.stale_writes + s.unfenced + s.not_rejoined > 0 };
});
