// Response schemas of the routes the dashboard reads, so the OpenAPI document (and the
// dashboard's generated types, bin/ui-types.ts) say what comes back. Fastify serializes with
// them too: a field not listed here is not sent.
import { Type } from 'typebox';

const DateTime = Type.String({ format: 'date-time' });

export const MeOut = Type.Union([
  Type.Object({
    type: Type.Literal('user'),
    id: Type.String(),
    email: Type.String(),
    isServerAdmin: Type.Boolean(),
    twoFactor: Type.Object({ enrolled: Type.Boolean(), required: Type.Boolean() }),
  }),
  Type.Object({ type: Type.Literal('api_key'), id: Type.String(), orgId: Type.String(), actions: Type.Array(Type.String()) }),
]);

export const SignedInOut = Type.Object({ id: Type.String(), email: Type.String(), isServerAdmin: Type.Boolean() });
export const SecondFactorOut = Type.Object({ secondFactor: Type.Union([Type.Literal('totp'), Type.Literal('enrol')]), ticket: Type.String() });

export const OrgOut = Type.Object({ id: Type.String(), slug: Type.String(), name: Type.String(), version: Type.Integer(), createdAt: DateTime, updatedAt: DateTime });
export const OrgListOut = Type.Object({ items: Type.Array(OrgOut), limit: Type.Integer(), offset: Type.Integer() });

export const NodeOut = Type.Object({
  id: Type.String(),
  incarnation: Type.String(),
  admin: Type.String(),
  peer: Type.String(),
  addresses: Type.Array(Type.String()),
  startedAt: DateTime,
  leaseAgeMs: Type.Union([Type.Integer(), Type.Null()]),
  actors: Type.Union([Type.Record(Type.String(), Type.Integer()), Type.Null()]),
});
export const NodeListOut = Type.Object({ items: Type.Array(NodeOut) });

export const PlacementOut = Type.Object({
  items: Type.Array(Type.Object({
    kind: Type.Union([Type.Literal('site'), Type.Literal('resource'), Type.Literal('dns-zone'), Type.Literal('cert-issuer')]),
    id: Type.String(),
    name: Type.String(),
    orgId: Type.Union([Type.String(), Type.Null()]),
    node: Type.Union([Type.String(), Type.Null()]),
  })),
});

export const SetupStatusOut = Type.Object({ needed: Type.Boolean() });
