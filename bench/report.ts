import type { Machine } from './machine.ts';
import type { Plan } from './plans.ts';
import type { DrainBrokerResult } from './scenarios/drain-brokers.ts';
import type { DrainMemoryResult } from './scenarios/drain-memory.ts';
import type { ConsumeKafkaResult } from './scenarios/consume-kafka.ts';
import type { InboxResult } from './scenarios/inbox.ts';
import type { DirectLatencyResult, LatencyResult } from './scenarios/latency.ts';
import type { BacklogResult } from './scenarios/scaling.ts';
import type { CleanupResult } from './scenarios/cleanup.ts';
import type { StatusResult } from './scenarios/status.ts';
import type { EndpointsFigures } from './scenarios/endpoints.ts';
import { connectionRows, type ConnectionsResult } from './scenarios/connections.ts';
import type { FeedMemoryResult } from './scenarios/feed-memory.ts';
import type { TracedDrainResult, TracedWriteResult } from './scenarios/telemetry.ts';
import type { WriteResult } from './scenarios/write.ts';
import { format } from './support.ts';

/** Everything one bench run measured: the shape of bench/results.json. */
export interface Results {
  date: string;
  quick: boolean;
  machine: Machine;
  plan: Plan;
  seconds?: number;
  write?: WriteResult;
  inbox?: InboxResult;
  consume?: { readonly kafka: ConsumeKafkaResult };
  drain?: { memory: DrainMemoryResult; rabbitmq: DrainBrokerResult; kafka: DrainBrokerResult; kafka_platformatic?: DrainBrokerResult; webhook: DrainBrokerResult };
  latency?: Record<'memory' | 'sse' | 'websocket', LatencyResult> &
    Record<'rabbitmq' | 'kafka' | 'webhook', LatencyResult & Partial<DirectLatencyResult>> & { kafka_platformatic?: LatencyResult & Partial<DirectLatencyResult> };
  scaling?: { backlog_ratio: number; backlog: BacklogResult; workers: Record<string, number> };
  cleanup?: CleanupResult;
  status?: StatusResult;
  endpoints?: Record<string, EndpointsFigures>;
  connections?: ConnectionsResult;
  feeds?: FeedMemoryResult;
  telemetry?: { drain_memory: TracedDrainResult; write: TracedWriteResult };
}

interface Row {
  readonly figure: string;
  readonly value: number | undefined;
  readonly unit?: string;
  /** The goal, when the figure has one. */
  readonly target?: { readonly atLeast?: number; readonly atMost?: number };
  readonly note?: string;
}

/** The figures as a Markdown table (it reads in a terminal and pastes into the README as is). */
export function report(results: Results): string {
  const { write, inbox, consume, drain, latency, scaling, cleanup, status, endpoints, connections, feeds, telemetry, machine } = results;
  const rows: Row[] = [];
  if (write) {
    rows.push(
      { figure: 'write.overhead_ratio', value: write.overhead_ratio, note: `${format(write.plain_tx_per_s)} vs ${format(write.event_tx_per_s)} tx/s` },
      { figure: 'write.overhead_ratio_no_notify', value: write.overhead_ratio_no_notify, note: `${format(write.event_no_notify_tx_per_s)} tx/s with the event, no NOTIFY` },
      { figure: 'write.one_more_insert_ratio', value: write.one_more_insert_ratio, note: 'a second business row instead of the event' },
      {
        figure: 'write.overhead_over_one_more_insert',
        value: write.overhead_ratio / write.one_more_insert_ratio,
        target: { atMost: 1.1 },
        note: 'the event against one more business row: the two medians above divided',
      },
    );
  }
  if (inbox) {
    rows.push(
      { figure: 'inbox.overhead_ratio', value: inbox.overhead_ratio, target: { atMost: 1.3 }, note: `${format(inbox.plain_tx_per_s)} vs ${format(inbox.inbox_tx_per_s)} tx/s` },
      { figure: 'inbox.one_more_insert_ratio', value: inbox.one_more_insert_ratio, note: 'a second business row instead of the inbox' },
    );
  }
  if (consume) {
    const { kafka } = consume;
    rows.push({
      figure: 'consume.kafka.platformatic_ratio',
      value: kafka.platformatic_ratio,
      note: `consumeKafka drain, @platformatic/kafka ${format(kafka.platformatic_events_per_s)}/s vs kafkajs ${format(kafka.kafkajs_events_per_s)}/s`,
    });
    rows.push({
      figure: 'consume.kafka.records_per_transaction',
      value: kafka.platformatic_records_per_transaction,
      note: `@platformatic/kafka; kafkajs ${format(kafka.kafkajs_records_per_transaction)}`,
    });
    rows.push({
      figure: 'consume.kafka.join_ms',
      value: kafka.platformatic_join_ms,
      unit: ' ms',
      note: `@platformatic/kafka, from consumeKafka to the assignment; kafkajs ${format(kafka.kafkajs_join_ms)} ms`,
    });
  }
  if (drain) {
    rows.push(
      { figure: 'drain.memory.events_per_s', value: drain.memory.events_per_s, unit: '/s', target: { atLeast: 100_000 } },
      { figure: 'drain.memory.read_limit_ratio', value: drain.memory.read_limit_ratio, target: { atLeast: 0.5 }, note: `bare log read ${format(drain.memory.read_limit_per_s)}/s` },
    );
    // Runs before CPU was measured have no CPU figures.
    if (drain.memory.cpu_us_per_event !== undefined) {
      rows.push({ figure: 'drain.memory.cpu_us_per_event', value: drain.memory.cpu_us_per_event, unit: ' µs', note: 'Node CPU (user + system) per delivered event' });
    }
    for (const name of ['rabbitmq', 'kafka', 'kafka_platformatic', 'webhook'] as const) {
      // Runs before the @platformatic/kafka client was measured have no figures for it.
      const d = drain[name];
      if (d === undefined) continue;
      rows.push({ figure: `drain.${name}.ratio`, value: d.ratio, target: { atLeast: 0.9 }, note: `relay ${format(d.events_per_s)}/s vs direct ${format(d.direct_per_s)}/s` });
      if (d.cpu_us_per_event !== undefined) {
        rows.push({ figure: `drain.${name}.cpu_us_per_event`, value: d.cpu_us_per_event, unit: ' µs', note: `Node CPU per delivered event; the direct client ${format(d.direct_cpu_us_per_event)} µs` });
      }
    }
  }
  if (latency) {
    for (const [name, l] of Object.entries(latency)) {
      // Brokers: within 10 ms at p99 while holding the rate (the local broker confirms in 1-3 ms).
      const limit = name === 'memory' ? 25 : name === 'rabbitmq' || name.startsWith('kafka') ? 10 : 50;
      const feed = name === 'sse' || name === 'websocket';
      const what = feed ? 'commit to received' : 'commit to acknowledged';
      rows.push(
        { figure: `latency.${name}.p50_ms`, value: l.p50_ms, unit: ' ms', note: `${what}, ${format(l.committed_per_s)} commits/s` },
        { figure: `latency.${name}.p99_ms`, value: l.p99_ms, unit: ' ms', target: feed ? undefined : { atMost: limit }, note: `max ${format(l.max_ms)} ms over ${l.events} events` },
      );
      // Runs before the split was measured have none.
      if (l.commit_to_send_p99_ms !== undefined && l.send_to_ack_p99_ms !== undefined) {
        rows.push(
          {
            figure: `latency.${name}.commit_to_send_p99_ms`,
            value: l.commit_to_send_p99_ms,
            unit: ' ms',
            note: `COMMIT to the relay's send call (wake-up, read, wait behind the partition's last batch); p50 ${format(l.commit_to_send_p50_ms!)} ms; event loop ${format(l.event_loop_utilization * 100)} % busy, delay p99 ${format(l.event_loop_delay_p99_ms)} ms`,
          },
          { figure: `latency.${name}.send_to_ack_p99_ms`, value: l.send_to_ack_p99_ms, unit: ' ms', note: `send call to acknowledgement; p50 ${format(l.send_to_ack_p50_ms!)} ms` },
        );
      }
      // Runs before the floor was measured have no direct figures.
      const d = l as Partial<DirectLatencyResult>;
      if (d.direct_p50_ms !== undefined && d.direct_p99_ms !== undefined) {
        const note = `the ${name} client alone, send to acknowledged, ${format(d.direct_per_s!)} sends/s`;
        rows.push(
          { figure: `latency.${name}.direct_p50_ms`, value: d.direct_p50_ms, unit: ' ms', note },
          { figure: `latency.${name}.direct_p99_ms`, value: d.direct_p99_ms, unit: ' ms', note: `max ${format(d.direct_max_ms!)} ms; relay p99 minus this: ${format(l.p99_ms - d.direct_p99_ms)} ms` },
        );
      }
    }
  }
  if (scaling) {
    const b = scaling.backlog;
    rows.push({
      figure: 'scaling.backlog_ratio',
      value: scaling.backlog_ratio,
      target: { atLeast: 0.9 },
      note: `${format(results.plan.backlog.large)} backlog ${format(b.large_per_s)}/s vs ${format(results.plan.backlog.small)} backlog ${format(b.small_per_s)}/s`,
    });
    for (const [count, rate] of Object.entries(scaling.workers)) {
      rows.push({ figure: `scaling.workers.${count}`, value: rate, unit: '/s', note: `${count} worker process${count === '1' ? '' : 'es'}` });
    }
  }
  if (cleanup) {
    const relays = format(results.plan.cleanup.relays);
    rows.push(
      {
        figure: 'cleanup.relays_ratio',
        value: cleanup.relays_ratio,
        target: { atLeast: 0.8 },
        note: `${relays} relays ${format(cleanup.many_relays_rows_per_s)} rows/s vs 1 relay ${format(cleanup.one_relay_rows_per_s)} rows/s, ${format(results.plan.cleanup.events)} events`,
      },
      { figure: 'cleanup.rows_per_s', value: cleanup.one_relay_rows_per_s, unit: '/s', note: 'deleted by retention, one relay' },
    );
  }
  if (status) {
    const { relays, events, behind } = results.plan.status;
    rows.push({
      figure: `status.relays_${relays}_ms`,
      value: status.many_relays_ms,
      unit: ' ms',
      target: { atMost: 1000 },
      note: `status() with ${format(relays)} relays ${format(behind)} events behind per partition (half filtered) vs ${format(status.one_relay_ms)} ms with 1 relay, ${format(events)} events`,
    });
  }
  for (const [count, figures] of Object.entries(endpoints ?? {})) {
    rows.push({
      figure: `scaling.endpoints.${count}`,
      value: figures.deliveries_per_s,
      unit: '/s',
      note:
        `webhook deliveries to ${count} endpoints; idle ${format(figures.idle_queries_per_s)} statements/s, ${format(figures.heap_kib_per_endpoint)} KiB heap per endpoint` +
        // results.json of runs before these figures have none of them.
        (figures.running_s === undefined
          ? ''
          : `, ${figures.server_connections} server connections at most, all running ${format(figures.running_s)} s after start, create ${format(figures.create_ms)} ms`),
    });
  }
  // results.json of runs before the connections scenario have no plan for it.
  if (connections && results.plan.connections) rows.push(...connectionRows(connections, results.plan.connections));
  if (feeds && results.plan.feeds) {
    const note = `server heap with ${format(results.plan.feeds.connections)} connections open, each caught up`;
    rows.push(
      { figure: 'feeds.sse.heap_kib_per_connection', value: feeds.sse_heap_kib_per_connection, unit: ' KiB', note },
      { figure: 'feeds.websocket.heap_kib_per_connection', value: feeds.websocket_heap_kib_per_connection, unit: ' KiB', note },
    );
  }
  if (telemetry) {
    const { drain_memory: d, write: w } = telemetry;
    rows.push(
      { figure: 'drain.memory.traced_ratio', value: d.traced_ratio, target: { atLeast: 0.9 }, note: `with an OpenTelemetry SDK ${format(d.traced_per_s)}/s vs without ${format(d.plain_per_s)}/s` },
      { figure: 'write.traced_overhead_ratio', value: w.traced_overhead_ratio, note: `${format(w.plain_tx_per_s)} vs ${format(w.traced_tx_per_s)} tx/s with an SDK and a request span` },
    );
  }
  const lines = [
    `tidings bench${results.quick ? ' (--quick)' : ''}, ${results.date.slice(0, 10)}: ${machine.cores} cores (${machine.cpu}), ${machine.memory_gib} GiB, ` +
      `Node ${machine.node}, PostgreSQL ${machine.postgresql}, RabbitMQ ${machine.rabbitmq}, Kafka ${machine.kafka}`,
    '',
    '| figure | median | target | | side by side |',
    '|---|---:|---:|:-:|---|',
    ...rows.map((row) => {
      const value = row.value === undefined ? '—' : `${format(row.value)}${row.unit ?? ''}`;
      const target = row.target?.atLeast !== undefined ? `≥ ${format(row.target.atLeast)}` : row.target?.atMost !== undefined ? `≤ ${format(row.target.atMost)}` : '';
      return `| ${row.figure} | ${value} | ${target} | ${verdict(row)} | ${row.note ?? ''} |`;
    }),
  ];
  return lines.join('\n');
}

function verdict(row: Row): string {
  if (!row.target || row.value === undefined) return '';
  const met = (row.target.atLeast === undefined || row.value >= row.target.atLeast) && (row.target.atMost === undefined || row.value <= row.target.atMost);
  return met ? 'met' : 'missed';
}
