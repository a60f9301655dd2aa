// Which actors hear of which admin change (the rule every node applies to announcements and
// to changes replayed from the audit log).
import t from 'tap';
import { reactionsTo } from '../../supervisors/change-routing.ts';

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
