/**
 * tidings' OpenTelemetry instrumentation, through `@opentelemetry/api` only: every call here is a
 * no-op until the application registers an SDK (a tracer provider, a meter provider, a context
 * manager). Trace context travels in the events' headers as W3C `traceparent` / `tracestate`,
 * written and read here without a registered propagator, so a relay or consumer in another
 * process joins the trace whatever propagators that process configured.
 */
import {
  context,
  createTraceState,
  INVALID_SPANID,
  INVALID_TRACEID,
  isSpanContextValid,
  metrics,
  ROOT_CONTEXT,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Counter,
  type Histogram,
  type MeterProvider,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';

/** The instrumentation scope of every tracer and meter tidings uses. */
export const instrumentationScope = 'tidings';
const scopeVersion = '0.1.0';

export function tidingsTracer(): Tracer {
  // Asked each time (per batch or per handled event, never per row read): the proxy the API
  // returns before an SDK is registered would otherwise pin a provider that a test or an
  // application replaces later.
  return trace.getTracer(instrumentationScope, scopeVersion);
}

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The active span's context as W3C trace context headers, or undefined when no valid span is
 * active (always so without an SDK).
 */
export function activeTraceHeaders(active: Context = context.active()): { traceparent: string; tracestate?: string } | undefined {
  const span = trace.getSpanContext(active);
  if (span === undefined || !isSpanContextValid(span)) return undefined;
  const flags = (span.traceFlags & 0xff).toString(16).padStart(2, '0');
  const traceparent = `00-${span.traceId}-${span.spanId}-${flags}`;
  const tracestate = span.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** The producer's span context carried by an event's headers, or undefined when absent or malformed. */
export function producerSpanContext(headers: Readonly<Record<string, string>> | undefined): SpanContext | undefined {
  const traceparent = headers?.traceparent;
  if (typeof traceparent !== 'string') return undefined;
  const match = traceparentPattern.exec(traceparent.trim());
  if (!match) return undefined;
  // The pattern admits lowercase hex only, so what is left to refuse are the all-zero ids.
  if (match[1] === INVALID_TRACEID || match[2] === INVALID_SPANID) return undefined;
  const spanContext: SpanContext = {
    traceId: match[1]!,
    spanId: match[2]!,
    traceFlags: Number.parseInt(match[3]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  const tracestate = headers?.tracestate;
  return typeof tracestate === 'string' && tracestate !== '' ? { ...spanContext, traceState: createTraceState(tracestate) } : spanContext;
}

/** A context whose parent is the event's producer, or the active context when the event carries none. */
export function producerContext(headers: Readonly<Record<string, string>> | undefined): Context {
  const producer = producerSpanContext(headers);
  return producer ? trace.setSpanContext(ROOT_CONTEXT, producer) : context.active();
}

/** Every instrument tidings records to, created on meter `tidings`. */
export interface TidingsInstruments {
  readonly published: Counter;
  readonly delivered: Counter;
  readonly retried: Counter;
  readonly deadLettered: Counter;
  readonly parked: Counter;
  readonly sendDuration: Histogram;
  readonly commitToAck: Histogram;
  readonly inboxDuplicates: Counter;
  readonly handlerDuration: Histogram;
  readonly handlerFailures: Counter;
}

/** Bucket bounds in seconds: sends and handlers take milliseconds, an event's wait may take minutes. */
const shortSeconds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const longSeconds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

let cached: { readonly provider: MeterProvider; readonly instruments: TidingsInstruments } | undefined;

/**
 * The instruments of the meter provider registered now. Instruments taken from the API before an
 * SDK is registered stay no-ops for ever, so they are made again whenever the global provider
 * changes; between changes this is one comparison.
 */
export function instruments(): TidingsInstruments {
  const provider = metrics.getMeterProvider();
  if (cached?.provider === provider) return cached.instruments;
  const meter = provider.getMeter(instrumentationScope, scopeVersion);
  const made: TidingsInstruments = {
    published: meter.createCounter('tidings.events.published', { description: 'Events written into the outbox (counted when publish() returns; a rolled-back transaction still counts)', unit: '{event}' }),
    delivered: meter.createCounter('tidings.relay.events.delivered', { description: 'Events the destination acknowledged', unit: '{event}' }),
    retried: meter.createCounter('tidings.relay.events.retried', { description: 'Refusals of one event that will be retried', unit: '{event}' }),
    deadLettered: meter.createCounter('tidings.relay.events.dead_lettered', { description: 'Events that became dead letters', unit: '{event}' }),
    parked: meter.createCounter('tidings.relay.events.parked', { description: 'Events set aside behind a dead letter of their key', unit: '{event}' }),
    sendDuration: meter.createHistogram('tidings.relay.send.duration', {
      description: 'Time of one Transport.send() of a batch, until the destination acknowledged or failed',
      unit: 's',
      advice: { explicitBucketBoundaries: shortSeconds },
    }),
    commitToAck: meter.createHistogram('tidings.relay.commit_to_ack.duration', {
      description: "Time from an event's write into the outbox to the destination's acknowledgement",
      unit: 's',
      advice: { explicitBucketBoundaries: longSeconds },
    }),
    inboxDuplicates: meter.createCounter('tidings.inbox.duplicates', { description: 'Deliveries the inbox skipped because the event was already applied', unit: '{event}' }),
    handlerDuration: meter.createHistogram('tidings.consumer.handler.duration', {
      description: "Time of one run of a consumer helper's handler",
      unit: 's',
      advice: { explicitBucketBoundaries: shortSeconds },
    }),
    handlerFailures: meter.createCounter('tidings.consumer.handler.failures', { description: 'Runs of a consumer handler that threw', unit: '{run}' }),
  };
  cached = { provider, instruments: made };
  return made;
}

/** Frozen attribute sets, made once per relay or consumer so recording allocates nothing. */
export function attributes(values: Attributes): Attributes {
  return Object.freeze({ ...values });
}
