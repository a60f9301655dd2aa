// /api/v1/auth/login/second-factor and /api/v1/auth/totp: the code step of a login, TOTP
// enrolment (with a session, or with the ticket of a login that must enrol first), turning
// it off, and who must use it (a user: server admins; an org: its admins).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { z } from 'zod';
import { ClusterError } from '../../../core/errors.ts';
import { base32, otpauthUri } from '../../../core/totp.ts';
import { sql, withDb } from '../../../persistence/db.ts';
import { hit, LOGIN_LIMITS } from '../../../persistence/rate-limit.ts';
import { checkSecondFactor, confirmEnrolment, disableSecondFactor, LoginTickets, startEnrolment, type Ticket } from '../../../persistence/second-factor.ts';
import { authenticated, orgAccess } from '../auth.ts';
import { OrgParams, write, type ApiDeps } from '../http.ts';
import { startSession } from './auth.ts';

const Code = Type.String({ pattern: '^[0-9]{6}$' });
const TicketField = Type.String({ minLength: 10, maxLength: 100 });
const badTicket = () => new ClusterError('CLUSTER_ERR_AUTH_BAD_TICKET', 'the login ticket is unknown, expired or spent; log in again', {});

/** The user this enrolment is for: the session's, or a login ticket's that must enrol. */
async function enrollee(d: ApiDeps, req: FastifyRequest, ticket: string | undefined): Promise<{ userId: string; ticket?: Ticket }> {
  if (ticket !== undefined) {
    const t = await new LoginTickets(d.valkey).read(ticket);
    if (!t || t.stage !== 'enrol') throw badTicket();
    return { userId: t.userId, ticket: t };
  }
  const p = req.principal;
  if (p?.type !== 'user') throw new ClusterError('CLUSTER_ERR_API_UNAUTHENTICATED', 'log in (API keys have no second factor)', {});
  return { userId: p.userId };
}

export function twoFactorRoutes(app: FastifyInstance, deps: () => ApiDeps) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post('/api/v1/auth/login/second-factor', {
    schema: { tags: ['auth'], summary: "A login's second step: a TOTP code or a recovery code; sets the session cookie", body: Type.Object({ ticket: TicketField, code: Type.Optional(Code), recoveryCode: Type.Optional(Type.String({ minLength: 6, maxLength: 40 })) }, { additionalProperties: false }) },
  }, async (req, reply) => {
    const d = deps();
    await hit(d.valkey, LOGIN_LIMITS.perAddress, req.ip);
    const tickets = new LoginTickets(d.valkey);
    const t = await tickets.read(req.body.ticket);
    if (!t || t.stage !== 'totp' || t.purpose !== 'admin') throw badTicket();
    if (!(await checkSecondFactor(d.db, d.sealer, t.userId, req.body, Date.now()))) {
      await tickets.failed(req.body.ticket, t);
      throw new ClusterError('CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR', 'wrong or used code', {});
    }
    await tickets.spend(req.body.ticket);
    await startSession(d, reply, t.userId);
    const u = await withDb(() => d.db.one(sql.type(z.object({ id: z.string(), email: z.string(), isServerAdmin: z.boolean() }))`SELECT id, email, is_server_admin AS "isServerAdmin" FROM users WHERE id = ${t.userId}`));
    return u;
  });

  r.post('/api/v1/auth/totp', {
    schema: { tags: ['auth'], summary: 'Start TOTP enrolment: a secret for the app (confirm with a code to turn it on). Body: {} with a session, or {"ticket"} from a login that must enrol', body: Type.Object({ ticket: Type.Optional(TicketField) }, { additionalProperties: false }) },
  }, async (req) => {
    const d = deps();
    const ticket = req.body.ticket;
    const { userId } = await enrollee(d, req, ticket);
    const email = await withDb(() => d.db.oneFirst(sql.type(z.object({ email: z.string() }))`SELECT email FROM users WHERE id = ${userId}`));
    const secret = await startEnrolment(d.db, d.sealer, userId);
    return { secret: base32(secret), otpauthUri: otpauthUri(secret, email, 'cluster') };
  });

  r.post('/api/v1/auth/totp/confirm', {
    schema: { tags: ['auth'], summary: 'Turn TOTP on with a code from the app; returns the recovery codes (shown once)', body: Type.Object({ code: Code, ticket: Type.Optional(TicketField) }, { additionalProperties: false }) },
  }, async (req, reply) => {
    const d = deps();
    await hit(d.valkey, LOGIN_LIMITS.perAddress, req.ip);
    const { userId, ticket } = await enrollee(d, req, req.body.ticket);
    const recoveryCodes = await confirmEnrolment(d.db, d.sealer, userId, req.body.code, Date.now());
    await write(d, req, { kind: 'user', id: userId, orgId: null, action: 'updated' }, async () => ({ id: userId }), () => ({ twoFactor: 'enabled' }));
    // Enrolled during a login: the login is done.
    if (ticket && req.body.ticket) {
      await new LoginTickets(d.valkey).spend(req.body.ticket);
      if (ticket.purpose === 'admin') await startSession(d, reply, userId);
    }
    return { recoveryCodes };
  });

  r.delete('/api/v1/auth/totp', {
    schema: { tags: ['auth'], summary: 'Turn TOTP off (needs a current code or a recovery code)', body: Type.Object({ code: Type.Optional(Code), recoveryCode: Type.Optional(Type.String({ minLength: 6, maxLength: 40 })) }, { additionalProperties: false }) },
    preHandler: authenticated(),
  }, async (req, reply) => {
    const d = deps();
    const { userId } = await enrollee(d, req, undefined);
    await hit(d.valkey, LOGIN_LIMITS.perAccount, userId);
    if (!(await checkSecondFactor(d.db, d.sealer, userId, req.body, Date.now()))) throw new ClusterError('CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR', 'wrong or used code', {});
    await disableSecondFactor(d.db, userId);
    await write(d, req, { kind: 'user', id: userId, orgId: null, action: 'updated' }, async () => ({ id: userId }), () => ({ twoFactor: 'disabled' }));
    return reply.code(204).send();
  });

  r.put('/api/v1/orgs/:orgId/two-factor', {
    schema: { tags: ['orgs'], summary: 'Require two-factor sign-in of every member (from their next login)', params: OrgParams, body: Type.Object({ required: Type.Boolean() }, { additionalProperties: false }) },
    preHandler: orgAccess(deps, 'members:write'),
  }, async (req) => {
    const { orgId } = req.params;
    await write(deps(), req, { kind: 'org', id: orgId, orgId, action: 'updated' }, async (tx) => {
      await tx.query(sql.unsafe`UPDATE orgs SET require_2fa = ${req.body.required}, version = version + 1, updated_at = now() WHERE id = ${orgId}`);
      return { id: orgId };
    }, () => ({ require2fa: req.body.required }));
    return { required: req.body.required };
  });
}
