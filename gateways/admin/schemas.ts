// Response schemas of the routes the dashboard reads, so the OpenAPI document (and the
// dashboard's generated types, bin/ui-types.ts) say what comes back. Fastify serializes with
// them too: a field not listed here is not sent.
import { Type } from 'typebox';

/** A timestamp: the API sends ISO 8601 text; handlers may hand over a Date (the serializer writes it). */
const DateTime = Type.Unsafe<string | Date>({ type: 'string', format: 'date-time' });

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

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const SiteOut = Type.Object({
  id: Type.String(),
  orgId: Type.String(),
  name: Type.String(),
  transport: Type.String(),
  version: Type.Integer(),
  lastSeenAt: Nullable(DateTime),
  createdAt: DateTime,
  status: Type.Object({
    online: Type.Boolean(),
    node: Nullable(Type.String()),
    connectedSince: Nullable(Type.String()),
    transport: Nullable(Type.Union([Type.Literal('websocket'), Type.Literal('wireguard')])),
    /** Filled on single-site reads of a site online over WireGuard. */
    wireguard: Nullable(Type.Object({ siteAddress: Type.String(), nodeAddress: Type.String(), lastHandshakeAt: Nullable(Type.String()), rxBytes: Type.Integer(), txBytes: Type.Integer() })),
    targets: Type.Array(Type.Object({ targetId: Type.String(), healthy: Type.Boolean() })),
  }),
});
export const SiteListOut = Type.Object({ items: Type.Array(SiteOut), limit: Type.Integer(), offset: Type.Integer() });
export const ConnectorSecretOut = Type.Object({ connector: Type.Object({ id: Type.String(), secret: Type.String() }) });
export const SiteCreatedOut = Type.Object({ ...SiteOut.properties, status: Type.Optional(SiteOut.properties.status), connector: ConnectorSecretOut.properties.connector });

export const DomainOut = Type.Object({
  id: Type.String(),
  orgId: Type.String(),
  name: Type.String(),
  soaSerial: Type.Integer(),
  version: Type.Integer(),
  createdAt: DateTime,
  status: Type.Union([Type.Literal('pending'), Type.Literal('verified')]),
  verification: Type.Object({
    status: Type.Union([Type.Literal('pending'), Type.Literal('verified')]),
    verifiedAt: Nullable(DateTime),
    verifiedBy: Nullable(Type.String()),
    txt: Type.Object({ name: Type.String(), value: Type.String() }),
  }),
});
export const DomainListOut = Type.Object({ items: Type.Array(DomainOut), limit: Type.Integer(), offset: Type.Integer() });

const CertificateStatus = Type.Object({
  status: Type.String(),
  notAfter: Nullable(DateTime),
  renewAfter: Nullable(DateTime),
  lastError: Nullable(Type.String()),
  nextAttemptAt: Nullable(DateTime),
});
export const ResourceOut = Type.Object({
  id: Type.String(),
  orgId: Type.String(),
  name: Type.String(),
  protocol: Type.String(),
  domainId: Nullable(Type.String()),
  hostname: Nullable(Type.String()),
  proxyPort: Nullable(Type.Integer()),
  tls: Type.Boolean(),
  enabled: Type.Boolean(),
  version: Type.Integer(),
  createdAt: DateTime,
  status: Type.Object({
    published: Type.Boolean(),
    servingNodes: Type.Array(Type.String()),
    targets: Type.Array(Type.Object({ targetId: Type.String(), siteId: Type.String(), enabled: Type.Boolean(), healthy: Type.Boolean(), siteOnline: Type.Boolean(), node: Nullable(Type.String()) })),
    listenProblems: Type.Record(Type.String(), Type.String()),
    access: Nullable(Type.Object({ blockAccess: Type.Boolean(), methods: Type.Array(Type.String()), ssoRoles: Type.Array(Type.String()), ssoProviderId: Nullable(Type.String()), rules: Type.Integer(), shareLinks: Type.Integer() })),
  }),
  certificate: Nullable(CertificateStatus),
});
export const ResourceListOut = Type.Object({ items: Type.Array(ResourceOut), limit: Type.Integer(), offset: Type.Integer() });

export const TargetOut = Type.Object({
  id: Type.String(),
  resourceId: Type.String(),
  siteId: Type.String(),
  host: Type.String(),
  port: Type.Integer(),
  scheme: Type.String(),
  enabled: Type.Boolean(),
  weight: Type.Integer(),
  healthCheck: Type.Record(Type.String(), Type.Unknown()),
  version: Type.Integer(),
});
export const TargetListOut = Type.Object({ items: Type.Array(TargetOut) });

export const CertificateListOut = Type.Object({ items: Type.Array(Type.Object({ id: Type.String(), hostname: Type.String(), status: Type.String(), notAfter: Nullable(DateTime), renewAfter: Nullable(DateTime), lastError: Nullable(Type.String()) })) });

export const MemberListOut = Type.Object({ items: Type.Array(Type.Object({ userId: Type.String(), email: Type.String(), role: Type.String(), createdAt: DateTime })), limit: Type.Integer(), offset: Type.Integer() });

const ApiKeyOut = Type.Object({ id: Type.String(), name: Type.String(), prefix: Type.String(), actions: Type.Array(Type.String()), createdAt: DateTime, lastUsedAt: Nullable(DateTime), revoked: Type.Boolean() });
export const ApiKeyListOut = Type.Object({ items: Type.Array(ApiKeyOut) });
export const ApiKeyCreatedOut = Type.Object({ ...ApiKeyOut.properties, key: Type.String() });

export const AuditListOut = Type.Object({
  items: Type.Array(Type.Object({
    id: Type.String(),
    at: DateTime,
    actorType: Type.String(),
    actorId: Nullable(Type.String()),
    orgId: Nullable(Type.String()),
    action: Type.String(),
    targetType: Nullable(Type.String()),
    targetId: Nullable(Type.String()),
    nodeId: Nullable(Type.String()),
    details: Type.Record(Type.String(), Type.Unknown()),
  })),
  next: Nullable(Type.String()),
});

export const AccessLogOut = Type.Object({
  items: Type.Array(Type.Object({
    id: Type.String(), at: DateTime, resourceId: Type.String(), decision: Type.String(), method: Nullable(Type.String()), ruleId: Nullable(Type.String()),
    reason: Type.String(), client: Type.String(), userId: Nullable(Type.String()), nodeId: Type.String(), count: Type.Integer(),
  })),
  next: Nullable(Type.String()),
});

export const UserListOut = Type.Object({
  items: Type.Array(Type.Object({ id: Type.String(), email: Type.String(), displayName: Type.String(), isServerAdmin: Type.Boolean(), disabled: Type.Boolean(), require2fa: Type.Boolean(), twoFactor: Type.Boolean(), version: Type.Integer(), createdAt: DateTime })),
  limit: Type.Integer(),
  offset: Type.Integer(),
});

export const ZoneRecordsOut = Type.Object({
  /** Null until the zone's actor has published it. */
  serial: Nullable(Type.Integer()),
  /** What the parent zone must hold to delegate the domain here: NS records, with glue. */
  delegation: Type.Array(Type.Object({ ns: Type.String(), addresses: Type.Array(Type.String()) })),
  records: Type.Array(Type.Object({ name: Type.String(), type: Type.String(), ttl: Type.Integer(), value: Type.String() })),
});

const RuleOut = Type.Object({ id: Type.String(), priority: Type.Integer(), match: Type.String(), value: Type.String(), action: Type.String(), enabled: Type.Boolean() });
const ShareLinkOut = Type.Object({ id: Type.String(), title: Type.String(), pathPrefix: Nullable(Type.String()), expiresAt: Nullable(DateTime), makesSession: Type.Boolean(), createdAt: DateTime });
export const AccessOut = Type.Object({
  blockAccess: Type.Boolean(),
  sso: Type.Object({ enabled: Type.Boolean(), roles: Type.Array(Type.String()), userIds: Type.Array(Type.String()), providerId: Nullable(Type.String()) }),
  basicAuth: Type.Boolean(),
  emailCodes: Type.Object({ enabled: Type.Boolean(), allowed: Type.Array(Type.String()) }),
  password: Type.Boolean(),
  pin: Type.Boolean(),
  rules: Type.Array(RuleOut),
  shareLinks: Type.Array(ShareLinkOut),
});
export const ShareLinkCreatedOut = Type.Object({ ...ShareLinkOut.properties, token: Type.String(), url: Type.String() });
