import t from 'tap';
import { ADMIN, call, setupToken, startApiCluster } from '../harness/api.ts';

t.test('admin authentication across a load-balanced cluster', async (t) => {
  const c = await startApiCluster(t, 3);
  const direct = c.nodes.map((n) => n.adminUrl);

  await t.test('the setup token works once', async (t) => {
    const token = await setupToken(c.nodes);
    const again = await call(c.lb, 'POST', '/api/v1/auth/setup', { body: { token, email: 'second@example.com', password: 'another long password' } });
    t.match(again, { status: 409, body: { code: 'CLUSTER_ERR_AUTH_SETUP_DONE' } });
  });

  await t.test('a session from the load balancer works on every node; logout on one is refused on the others at once', async (t) => {
    const login = await call(c.lb, 'POST', '/api/v1/auth/login', { body: ADMIN });
    t.equal(login.status, 200);
    t.ok(login.cookie?.startsWith('cluster_session='));
    for (const base of direct) t.match(await call(base, 'GET', '/api/v1/auth/me', { cookie: login.cookie }), { status: 200, body: { email: ADMIN.email, isServerAdmin: true } });
    t.equal((await call(direct[0]!, 'POST', '/api/v1/auth/logout', { cookie: login.cookie })).status, 204);
    t.match(await call(direct[1]!, 'GET', '/api/v1/auth/me', { cookie: login.cookie }), { status: 401, body: { code: 'CLUSTER_ERR_API_UNAUTHENTICATED' } }, 'the very next request on another node is refused');
    t.match(await call(direct[2]!, 'GET', '/api/v1/auth/me', { cookie: login.cookie }), { status: 401 });
    t.match(await call(direct[0]!, 'GET', '/api/v1/orgs', { cookie: login.cookie }), { status: 401 });
  });

  await t.test('the login rate limit holds when attempts are spread over all nodes', async (t) => {
    const user = await call(c.lb, 'POST', '/api/v1/users', { cookie: c.adminCookie, body: { email: 'victim@example.com', password: 'the real password 123' } });
    t.equal(user.status, 201);
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await call(direct[i % 3]!, 'POST', '/api/v1/auth/login', { body: { email: 'victim@example.com', password: `guess ${i}` } })).status);
    t.same(statuses.slice(0, 10), Array(10).fill(401), 'ten wrong guesses are answered');
    t.same(statuses.slice(10), [429, 429], 'then every node refuses');
    const right = await call(direct[1]!, 'POST', '/api/v1/auth/login', { body: { email: 'victim@example.com', password: 'the real password 123' } });
    t.match(right, { status: 429, body: { code: 'CLUSTER_ERR_API_RATE_LIMITED' } }, 'even the right password waits for the window');
  });

  await t.test('members read, org admins write, strangers see nothing', async (t) => {
    const org = await call(c.lb, 'POST', '/api/v1/orgs', { cookie: c.adminCookie, body: { slug: 'gamma', name: 'Gamma' } });
    const mk = async (email: string) => (await call(c.lb, 'POST', '/api/v1/users', { cookie: c.adminCookie, body: { email, password: 'a long enough password' } })).body.id;
    const [memberId, adminId] = [await mk('member@example.com'), await mk('orgadmin@example.com')];
    await mk('stranger@example.com');
    t.equal((await call(c.lb, 'PUT', `/api/v1/orgs/${org.body.id}/members/${memberId}`, { cookie: c.adminCookie, body: { role: 'member' } })).status, 200);
    t.equal((await call(c.lb, 'PUT', `/api/v1/orgs/${org.body.id}/members/${adminId}`, { cookie: c.adminCookie, body: { role: 'admin' } })).status, 200);
    const as = async (email: string) => (await call(c.lb, 'POST', '/api/v1/auth/login', { body: { email, password: 'a long enough password' } })).cookie!;
    const [member, orgAdmin, stranger] = [await as('member@example.com'), await as('orgadmin@example.com'), await as('stranger@example.com')];
    t.equal((await call(c.lb, 'POST', `/api/v1/orgs/${org.body.id}/sites`, { cookie: orgAdmin, body: { name: 'office' } })).status, 201);
    t.match(await call(c.lb, 'GET', `/api/v1/orgs/${org.body.id}/sites`, { cookie: member }), { status: 200, body: { items: [{ name: 'office' }] } });
    t.match(await call(c.lb, 'POST', `/api/v1/orgs/${org.body.id}/sites`, { cookie: member, body: { name: 'x' } }), { status: 403 });
    t.match(await call(c.lb, 'GET', `/api/v1/orgs/${org.body.id}/sites`, { cookie: stranger }), { status: 404 });
    t.match(await call(c.lb, 'GET', `/api/v1/orgs/${org.body.id}/sites`), { status: 401 });
    t.match(await call(c.lb, 'POST', '/api/v1/orgs', { cookie: orgAdmin, body: { slug: 'mine', name: 'Mine' } }), { status: 403 }, 'only server admins create orgs');
    const me = await call(c.lb, 'GET', `/api/v1/users/${memberId}`, { cookie: c.adminCookie });
    t.equal((await call(c.lb, 'PATCH', `/api/v1/users/${memberId}`, { cookie: c.adminCookie, body: { version: me.body.version, disabled: true } })).status, 200);
    for (const n of c.nodes) t.match(await call(n.adminUrl, 'GET', '/api/v1/auth/me', { cookie: member }), { status: 401 }, 'a disabled user is logged out on every node at once');
  });
});
