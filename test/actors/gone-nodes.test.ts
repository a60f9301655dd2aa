// A node's death recomputes no route at once (every reader skips an owner without a lease;
// the moves of its sites recompute theirs): the routes still naming it are recomputed once
// site moves have been quiet for a while, or at a cap, as a floor under lost news.
import t from 'tap';
import type { Clock } from '../../core/clock.ts';
import { GoneNodes } from '../../supervisors/gone-nodes.ts';
import { QuietBatch } from '../../supervisors/quiet-batch.ts';
import { ZONE_CAP_MS, ZONE_QUIET_MS } from '../../supervisors/change-routing.ts';
import { SiteNews } from '../../supervisors/site-news.ts';
import { ResourceIndex } from '../../supervisors/resource-index.ts';

/** A clock moved by hand. */
function manualClock() {
  let now = 0;
  const timers = new Set<{ at: number; fn: () => void }>();
  const clock: Clock = {
    now: () => now,
    setTimeout(fn, ms) {
      const timer = { at: now + ms, fn };
      timers.add(timer);
      return { cancel: () => void timers.delete(timer) };
    },
    setInterval: () => ({ cancel() {} }),
    sleep: async () => {},
  };
  const advance = (ms: number) => {
    const until = now + ms;
    for (;;) {
      const next = [...timers].sort((a, b) => a.at - b.at)[0];
      if (!next || next.at > until) break;
      timers.delete(next);
      now = next.at;
      next.fn();
    }
    now = until;
  };
  return { clock, advance };
}

t.test('the check waits for site moves to go quiet, and no longer than the cap', async (t) => {
  const { clock, advance } = manualClock();
  const checked: string[][] = [];
  const news = new SiteNews(clock);
  const gone = new GoneNodes({ clock, quietForMs: () => news.quietForMs(), quietMs: 2000, capMs: 20_000, check: (nodes) => checked.push(nodes) });

  gone.gone(['n3']);
  advance(1999);
  t.same(checked, [], 'not before the quiet period');
  advance(1);
  t.same(checked, [['n3']], 'no move heard: checked after the quiet period');

  gone.gone(['n2']);
  for (let i = 0; i < 8; i++) {
    advance(1000);
    news.heard(); // a storm: a site moves every second
  }
  t.same(checked.length, 1, 'held back while sites keep moving');
  advance(2000);
  t.same(checked.at(-1), ['n2'], 'checked once the moves went quiet');

  gone.gone(['n1']);
  advance(500);
  gone.gone(['n4']); // a second death joins the pending check
  for (let i = 0; i < 30; i++) {
    advance(1000);
    news.heard();
  }
  t.same(checked.at(-1), ['n1', 'n4'], 'news never quiet: checked at the cap after the first death');
  t.equal(checked.length, 3);

  gone.gone(['n5']);
  gone.stop();
  advance(30_000);
  t.equal(checked.length, 3, 'stopped: nothing more');
});

// The zones' narrowing of addresses to the nodes holding their sites: at once when sites are
// quiet (one site moved a while ago), once after a storm instead of once per moved site
// (each change of records is a serial written to PostgreSQL).
t.test("a zone's addresses follow a lone move at once and a storm once", async (t) => {
  const { clock, advance } = manualClock();
  const news = new SiteNews(clock);
  const runs: string[][] = [];
  const zones = new QuietBatch<string>({ clock, quietForMs: () => news.quietButForOneSiteMs(), quietMs: ZONE_QUIET_MS, capMs: ZONE_CAP_MS, firstLookMs: 50, run: (z) => runs.push(z) });
  advance(10_000); // nothing moved for a while
  // One site's failover is news itself: its move, and its new standby just after.
  news.heard('site-a');
  zones.add(['example.com']);
  advance(20);
  news.heard('site-a');
  advance(30);
  t.same(runs, [['example.com']], 'quiet but for the one site it follows: the zone recomputes after the first look');

  // A storm: a site moves every 100 ms for 5 s, each move changing a route of one of two zones.
  for (let i = 0; i < 50; i++) {
    news.heard(`site-${i}`);
    zones.add([i % 2 ? 'example.com' : 'other.test']);
    advance(100);
  }
  t.equal(runs.length, 1, 'not once per move while the storm lasts');
  advance(ZONE_QUIET_MS);
  t.same(runs.at(-1)?.sort(), ['example.com', 'other.test'], 'each zone once, when the moves went quiet');
  t.equal(runs.length, 2);
});

t.test('the resource index finds the routes naming a node', async (t) => {
  const index = new ResourceIndex();
  const copy = {};
  index.set('r1', { hostname: 'a.example', siteIds: ['s1'] }, copy);
  index.named('r1', ['n1', 'n2'], copy);
  index.set('r2', { hostname: 'b.example', siteIds: ['s2'] });
  index.named('r2', ['n2']);
  t.same(index.naming('n2').sort(), ['r1', 'r2']);
  index.named('r1', ['n3'], copy); // its site moved
  t.same(index.naming('n1'), [], 'a node it no longer names');
  t.same(index.naming('n3'), ['r1']);
  index.named('r1', ['n9'], {}); // a stopped copy telling late
  t.same(index.naming('n3'), ['r1'], 'a copy that is not the current writer changes nothing');
  index.set('r1', null, copy);
  t.same(index.naming('n3'), [], 'gone from the index with the resource');
  t.same(index.naming('n2'), ['r2']);
});
