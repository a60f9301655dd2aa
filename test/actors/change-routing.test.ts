// Which actors hear of which admin change (the rule every node applies to announcements and
// to changes replayed from the audit log).
import t from 'tap';
import { reactionsTo, sitesReleased, touchedIds } from '../../supervisors/change-routing.ts';
import { enclosingNames, ResourceIndex } from '../../supervisors/resource-index.ts';

const told = (kind: string) => reactionsTo(kind).tell.map((r) => `${r.kind}:${r.msg.type}`).sort();

t.test('each kind of change reaches exactly the actors whose output depends on it', async (t) => {
  t.same(told('target'), ['resource:reload', 'site:config-changed'], 'targets: connectors and routes, not zones');
  t.same(told('site'), ['dns-zone:reload', 'resource:reload', 'site:config-changed']);
  t.same(told('resource'), ['cert-issuer:check', 'dns-zone:reload', 'resource:reload', 'site:config-changed']);
  t.same(told('domain'), ['cert-issuer:check', 'dns-zone:reload', 'resource:reload']);
  t.same(told('org'), ['dns-zone:reload', 'resource:reload']);
  t.same(told('user'), [], 'accounts change no actor');
  t.same(told('api_key'), []);
});

t.test('only changes that add or remove actors move placement', async (t) => {
  t.same(['resource', 'domain', 'org', 'site', 'target', 'user'].filter((k) => reactionsTo(k).replace), ['resource', 'domain', 'org']);
});

// A change that says what it touches wakes those actors only: waking every local actor of a
// kind (each reloading from PostgreSQL) grew with the number of sites on every node.
t.test('a change that names what it touches reaches only the actors it concerns', async (t) => {
  const index = new ResourceIndex();
  index.set('r1', { hostname: 'app.example.com', siteIds: ['s1'] });
  index.set('r2', { hostname: 'api.example.com', siteIds: ['s1', 's2'] });
  index.set('r3', { hostname: 'shop.other.test', siteIds: ['s3'] });
  index.set('r4', { hostname: null, siteIds: ['s2'] });
  const zones = new Set(['example.com', 'other.test']);
  const ids = (kind: 'site' | 'resource' | 'dns-zone', touches: Parameters<typeof touchedIds>[1]) => touchedIds(kind, touches, index, (z) => zones.has(z)).sort();

  // A target of r3 on site s3 changed.
  t.same(ids('site', { siteIds: ['s3'], resourceIds: ['r3'] }), ['s3'], 'its site');
  t.same(ids('resource', { siteIds: ['s3'], resourceIds: ['r3'] }), ['r3'], 'its resource');
  // Site s2 was deleted: the resources with a target on it reload, and their zones.
  t.same(ids('resource', { siteIds: ['s2'] }), ['r2', 'r4']);
  t.same(ids('dns-zone', { siteIds: ['s2'] }), ['example.com'], 'the zone of r2 (r4 has no hostname)');
  // A domain changed: the zone itself and the resources under it.
  t.same(ids('dns-zone', { names: ['other.test'] }), ['other.test']);
  t.same(ids('resource', { names: ['example.com'] }), ['r1', 'r2']);
  t.same(ids('resource', { names: ['app.example.com'] }), ['r1'], 'a hostname is under itself, not its siblings');
  t.same(ids('dns-zone', { names: ['deep.app.example.com'] }), ['example.com'], 'a name is in the zone that encloses it');
  t.same(ids('dns-zone', { names: ['example.co'] }), [], 'a name no local zone encloses wakes none');
  t.same(ids('site', {}), [], 'touching nothing wakes nobody');
});

t.test('the resource index follows each resource as it last published', async (t) => {
  const index = new ResourceIndex();
  index.set('r1', { hostname: 'a.example.com', siteIds: ['s1', 's2'] });
  index.set('r1', { hostname: 'a.example.com', siteIds: ['s2'] }); // the target on s1 was removed
  t.same(index.bySite('s1'), [], 'a site it no longer uses');
  t.same(index.bySite('s2'), ['r1']);
  index.set('r1', { hostname: 'b.other.test', siteIds: ['s2'] }); // renamed
  t.same(index.under('example.com'), [], 'no longer under its old name');
  t.same(index.under('Other.Test.'), ['r1'], 'under its new one (any case, trailing dot)');
  index.set('r1', null);
  t.same(index.under('other.test'), []);
  t.same(index.bySite('s2'), [], 'gone: nothing points at it');
  t.equal(index.hostname('r1'), undefined);
  t.same(enclosingNames('A.Example.com.'), ['a.example.com', 'example.com', 'com']);
});

t.test('a copy of a resource actor stopping late does not erase the entry of the copy that replaced it', async (t) => {
  const index = new ResourceIndex();
  const [old, fresh] = [{}, {}];
  index.set('r1', { hostname: 'a.example.com', siteIds: ['s1'] }, old);
  index.set('r1', { hostname: 'a.example.com', siteIds: ['s1'] }, fresh);
  index.set('r1', null, old);
  t.same(index.bySite('s1'), ['r1'], 'still indexed');
  index.set('r1', null, fresh);
  t.same(index.bySite('s1'), []);
});

// A site actor announces its session gone, then stops and releases its claim: a route
// recomputed on the announcement may still read the old owner, so the release recomputes
// the site's resources again (CI once saw a route naming a node without the tunnel for 10 s).
t.test('a released site recomputes its resources; claims and other kinds do not', async (t) => {
  t.same(sitesReleased({ type: 'released', kind: 'site', ids: ['s1', 's2'], node: 'node-1', incarnation: 'i' }), ['s1', 's2']);
  t.same(sitesReleased({ type: 'released', kind: 'resource', ids: ['r1'], node: 'node-1', incarnation: 'i' }), [], 'a resource actor moving is not a site moving');
  t.same(sitesReleased({ type: 'claimed', kind: 'site', ids: ['s1'], node: 'node-2', incarnation: 'i', epochs: [3] }), [], 'a claim is followed by its session announcement');
});
