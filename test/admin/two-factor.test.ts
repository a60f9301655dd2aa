// Two-factor sign-in for cluster accounts, in-process over real PostgreSQL and Valkey: TOTP
// enrolment and its codes (RFC 6238 vectors in the unit part), a login's second step, codes
// that work once, recovery codes, tickets that die after wrong codes, an org policy that makes
// its members enrol at their next login, and the secret sealed at rest.
import pg from 'pg';
import t from 'tap';
import { fromBase32, hotp, totpStep, base32, verifyTotp } from '../../core/totp.ts';
import { adminApp } from '../harness/admin-app.ts';

t.test('TOTP follows RFC 4226 / 6238 and accepts a code once', async (t) => {
  const key = Buffer.from('12345678901234567890');
  t.same([0, 1, 2, 3, 4].map((c) => hotp(key, c)), ['755224', '287082', '359152', '969429', '338314'], 'RFC 4226 appendix D');
  t.equal(hotp(key, Math.floor(1111111109 / 30), 8), '07081804', 'RFC 6238 appendix B (SHA-1)');
  t.same(fromBase32(base32(key)), key);
  const now = 1_800_000_000_000;
  const code = hotp(key, totpStep(now));
  t.equal(verifyTotp(key, code, now, 0), totpStep(now));
  t.equal(verifyTotp(key, code, now, totpStep(now)), undefined, 'a spent step is refused');
  t.equal(verifyTotp(key, hotp(key, totpStep(now) - 1), now, 0), totpStep(now) - 1, 'one step of drift back');
  t.equal(verifyTotp(key, hotp(key, totpStep(now) - 2), now, 0), undefined, 'not two');
  t.equal(verifyTotp(key, '12345', now, 0), undefined);
});

t.test('two-factor sign-in for cluster accounts', async (t) => {
  const { call, cookie, postgresUrl } = await adminApp(t);
  const db = new pg.Client({ connectionString: postgresUrl });
  await db.connect();
  t.teardown(() => db.end());
  const bob = { email: 'bob@example.com', password: 'bobs long password' };
  t.equal((await call('POST', '/api/v1/users', { cookie, body: bob })).status, 201);
  const first = await call('POST', '/api/v1/auth/login', { body: bob });
  t.equal(first.status, 200, 'without TOTP a password is enough');
  const session = first.cookie!;

  const enrol = await call('POST', '/api/v1/auth/totp', { cookie: session, body: {} });
  t.match(enrol.body, { secret: /^[A-Z2-7]{32}$/, otpauthUri: /^otpauth:\/\/totp\/cluster:bob%40example.com\?secret=/ });
  const key = fromBase32(enrol.body.secret);
  // Codes are taken relative to the enrolment's step, not the clock at each call: a 30 s step
  // boundary between two calls would otherwise turn "the spent code" into the next, unspent one.
  const enrolStep = totpStep(Date.now());
  const code = (offset = 0) => hotp(key, enrolStep + offset);
  const wrongCode = () => ['000000', '111111', '222222', '333333'].find((c) => ![-1, 0, 1, 2].some((o) => code(o) === c))!;
  t.equal((await call('POST', '/api/v1/auth/totp/confirm', { cookie: session, body: { code: wrongCode() } })).body.code, 'CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR', 'a wrong code does not turn it on');
  const confirmed = await call('POST', '/api/v1/auth/totp/confirm', { cookie: session, body: { code: code() } });
  t.equal(confirmed.status, 200);
  t.equal(confirmed.body.recoveryCodes.length, 10, 'ten recovery codes, shown once');
  t.equal((await call('POST', '/api/v1/auth/totp', { cookie: session, body: {} })).body.code, 'CLUSTER_ERR_AUTH_TOTP_ALREADY_ENABLED');
  const stored = (await db.query(`SELECT secret_sealed FROM user_totp t JOIN users u ON u.id = t.user_id WHERE u.email = 'bob@example.com'`)).rows[0].secret_sealed as Buffer;
  t.notOk(stored.includes(key), 'the secret is sealed at rest');

  const login = await call('POST', '/api/v1/auth/login', { body: bob });
  t.match([login.status, login.body.secondFactor, login.cookie], [202, 'totp', undefined], 'the password step gives a ticket, not a session');
  const replay = await call('POST', '/api/v1/auth/login/second-factor', { body: { ticket: login.body.ticket, code: code() } });
  t.equal(replay.body.code, 'CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR', 'the code spent on the enrolment does not work again');
  const loginCode = code(1);
  const done = await call('POST', '/api/v1/auth/login/second-factor', { body: { ticket: login.body.ticket, code: loginCode } });
  t.equal(done.status, 200, 'the next code (one step of drift) completes the login');
  t.ok(done.cookie, 'with a session');
  t.equal((await call('GET', '/api/v1/auth/me', { cookie: done.cookie })).body.twoFactor.enrolled, true);
  t.equal((await call('POST', '/api/v1/auth/login/second-factor', { body: { ticket: login.body.ticket, code: code(1) } })).body.code, 'CLUSTER_ERR_AUTH_BAD_TICKET', 'a ticket works once');

  const withRecovery = await call('POST', '/api/v1/auth/login', { body: bob });
  const recovery = confirmed.body.recoveryCodes[0];
  t.equal((await call('POST', '/api/v1/auth/login/second-factor', { body: { ticket: withRecovery.body.ticket, recoveryCode: recovery } })).status, 200, 'a recovery code instead of a code');
  const again = await call('POST', '/api/v1/auth/login', { body: bob });
  t.equal((await call('POST', '/api/v1/auth/login/second-factor', { body: { ticket: again.body.ticket, recoveryCode: recovery } })).body.code, 'CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR', 'but only once');
  for (let i = 0; i < 4; i++) await call('POST', '/api/v1/auth/login/second-factor', { body: { ticket: again.body.ticket, code: '000001' } });
  t.equal((await call('POST', '/api/v1/auth/login/second-factor', { body: { ticket: again.body.ticket, code: code(1) } })).body.code, 'CLUSTER_ERR_AUTH_BAD_TICKET', 'five wrong codes spend the ticket, even for a right one after');

  // An org that requires it: a member without TOTP must enrol at the next login.
  const carol = { email: 'carol@example.com', password: 'carols long password' };
  const carolId = (await call('POST', '/api/v1/users', { cookie, body: carol })).body.id;
  const org = (await call('POST', '/api/v1/orgs', { cookie, body: { slug: 'strict', name: 'Strict' } })).body;
  await call('PUT', `/api/v1/orgs/${org.id}/members/${carolId}`, { cookie, body: { role: 'member' } });
  t.equal((await call('PUT', `/api/v1/orgs/${org.id}/two-factor`, { cookie, body: { required: true } })).status, 200);
  const must = await call('POST', '/api/v1/auth/login', { body: carol });
  t.match([must.status, must.body.secondFactor, must.cookie], [202, 'enrol', undefined], 'a member of a strict org must enrol first');
  t.equal((await call('POST', '/api/v1/auth/login/second-factor', { body: { ticket: must.body.ticket, code: '123456' } })).body.code, 'CLUSTER_ERR_AUTH_BAD_TICKET', 'an enrolment ticket is no login');
  const carolEnrol = await call('POST', '/api/v1/auth/totp', { body: { ticket: must.body.ticket } });
  const carolKey = fromBase32(carolEnrol.body.secret);
  const enrolled = await call('POST', '/api/v1/auth/totp/confirm', { body: { ticket: must.body.ticket, code: hotp(carolKey, totpStep(Date.now())) } });
  t.equal(enrolled.body.recoveryCodes.length, 10);
  t.ok(enrolled.cookie, 'enrolling completes the login');
  t.match((await call('GET', '/api/v1/auth/me', { cookie: enrolled.cookie })).body.twoFactor, { enrolled: true, required: true });

  t.equal((await call('DELETE', '/api/v1/auth/totp', { cookie: done.cookie, body: { code: '000002' } })).body.code, 'CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR', 'turning it off needs a right code');
  t.equal((await call('DELETE', '/api/v1/auth/totp', { cookie: done.cookie, body: { code: loginCode } })).status, 401, 'the code spent at login stays spent');
  t.equal((await call('DELETE', '/api/v1/auth/totp', { cookie: done.cookie, body: { recoveryCode: confirmed.body.recoveryCodes[1] } })).status, 204, 'a recovery code turns it off');
  t.equal((await call('POST', '/api/v1/auth/login', { body: bob })).status, 200, 'and the password alone signs in again');
  const audit = (await db.query(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'user.updated' AND details->>'twoFactor' IS NOT NULL`)).rows[0].n;
  t.equal(audit, 3, 'enrolments and turning off are audited');
});
