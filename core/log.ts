// pino, Fastify's logger. One root logger per process, child loggers per component
// (`log.child({ component: 'valkey' })`). Paths that may carry credentials are redacted
// as a second line of defence; secrets are `Secret` objects and print as [redacted] anyway.
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

const REDACT = [
  'password', '*.password', 'secret', '*.secret', 'token', '*.token', 'authorization', '*.authorization',
  'req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]',
];

export function createLogger(opts: { level: string; pretty?: boolean; name?: string; base?: Record<string, unknown> }): Logger {
  return pino({
    level: opts.level,
    name: opts.name,
    base: { pid: process.pid, ...opts.base },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(opts.pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l' } } } : {}),
  });
}
