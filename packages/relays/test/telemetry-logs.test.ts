import { trace } from '@opentelemetry/api';
import { createRelay, publish } from '@tidings/outbox';
import { MemoryBroker, memoryTransport } from '@tidings/relays/testing';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/cli/log.ts';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { registerTelemetry, type TestTelemetry } from '../../../test/support/telemetry.ts';

let telemetry: TestTelemetry;
let outbox: TestOutbox;
const tracer = () => trace.getTracer('telemetry-test');

beforeAll(async () => {
  telemetry = registerTelemetry();
  outbox = await freshOutbox('otel_logs', { partitions: 2 });
});
afterAll(async () => {
  await outbox?.close();
  await telemetry?.close();
});

/** A logger as `tidings relay` makes it, writing its JSON lines into an array. */
function capturedLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('info', destination), lines };
}

describe("tidings' log lines", () => {
  it('carry trace_id and span_id while a span is active, and neither otherwise', async () => {
    const { log, lines } = capturedLogger();
    const ids = tracer().startActiveSpan('work', (span) => {
      log.info('inside');
      span.end();
      return span.spanContext();
    });
    log.info('outside');
    await waitUntil('both lines were written', async () => lines.length === 2);
    expect(lines[0]).toMatchObject({ msg: 'inside', trace_id: ids.traceId, span_id: ids.spanId, trace_flags: '01' });
    expect(lines[1]!.msg).toBe('outside');
    expect(lines[1]).not.toHaveProperty('trace_id');
  });

  it("of a refused and a dead-lettered event carry the trace of the request that published it", async () => {
    const { log, lines } = capturedLogger();
    const topic = 'logs.refused';
    const broker = new MemoryBroker();
    broker.failWhen(() => 'retry');
    const request = await tracer().startActiveSpan('POST /orders', async (span) => {
      await inTransaction(outbox.pool, (client) => publish(client, { topic, key: 'k', payload: 1 }, { schema: outbox.schema }));
      span.end();
      return span.spanContext();
    });
    const relay = createRelay({
      name: 'logs',
      database: outbox.db,
      schema: outbox.schema,
      transport: memoryTransport({ broker }),
      pollIntervalMs: 100,
      retry: { retries: 1, minDelayMs: 5, maxDelayMs: 10 },
      onEvent: (event) => {
        if (event.type === 'retry' || event.type === 'dead-letter') log.warn({ eventId: event.eventId }, event.type);
        else log.info(event.type);
      },
    });
    await relay.start();
    try {
      await waitUntil('the dead letter was logged', async () => lines.some((line) => line.msg === 'dead-letter'));
    } finally {
      await relay.stop({ graceMs: 1_000 });
    }
    const aboutTheEvent = lines.filter((line) => line.msg === 'retry' || line.msg === 'dead-letter');
    expect(aboutTheEvent.map((line) => line.msg)).toEqual(['retry', 'dead-letter']);
    for (const line of aboutTheEvent) expect(line).toMatchObject({ trace_id: request.traceId, span_id: request.spanId });
    expect(lines.find((line) => line.msg === 'lease-acquired')).not.toHaveProperty('trace_id');
  });
});
