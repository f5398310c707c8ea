import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import type { DestinationStream, Logger } from 'pino';
import { isInstalled, requirePackage } from '../shared/optional-package.ts';

/**
 * JSON lines for machines; readable lines when a person watches a terminal and pino-pretty is
 * installed. pino and pino-pretty are optional peer dependencies: without pino, `tidings relay`
 * says which package to install.
 */
export function createLogger(level = process.env.TIDINGS_LOG_LEVEL ?? 'info', destination?: DestinationStream): Logger {
  const { pino } = requirePackage<typeof import('pino')>('pino', 'the log of tidings relay');
  if (destination) return pino({ level, mixin: traceFields }, destination);
  if (process.stdout.isTTY && isInstalled('pino-pretty')) {
    return pino({ level, mixin: traceFields, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } });
  }
  return pino({ level, mixin: traceFields });
}

/**
 * The active span's ids, so a log line can be found from its trace and the other way round. The
 * relay reports a refused or dead-lettered event in the context it was published in, so those
 * lines carry the publisher's trace.
 */
export function traceFields(): Record<string, string> {
  const span = trace.getSpanContext(context.active());
  if (span === undefined || !isSpanContextValid(span)) return {};
  return { trace_id: span.traceId, span_id: span.spanId, trace_flags: (span.traceFlags & 0xff).toString(16).padStart(2, '0') };
}
