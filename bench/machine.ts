import { execFileSync } from 'node:child_process';
import os from 'node:os';
import amqp from 'amqplib';
import pg from 'pg';

export interface Machine {
  readonly cores: number;
  readonly cpu: string;
  readonly memory_gib: number;
  readonly node: string;
  readonly postgresql: string;
  readonly rabbitmq: string;
  readonly kafka: string;
}

/** What the figures were measured on: the machine and the version of every service. */
export async function describeMachine(urls: { postgres: string; rabbitmq: string }): Promise<Machine> {
  return {
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    postgresql: await postgresVersion(urls.postgres),
    rabbitmq: await rabbitmqVersion(urls.rabbitmq),
    kafka: kafkaVersion(),
  };
}

async function postgresVersion(url: string): Promise<string> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return rows[0]!.server_version;
  } finally {
    await client.end();
  }
}

async function rabbitmqVersion(url: string): Promise<string> {
  const model = await amqp.connect(url);
  try {
    const properties = (model.connection as unknown as { serverProperties?: { version?: unknown } }).serverProperties;
    return String(properties?.version ?? 'unknown');
  } finally {
    await model.close();
  }
}

/**
 * The Kafka protocol does not report the broker's version, so it is read from the broker process's
 * class path (`kafka_<scala>-<version>.jar`), which holds for the broker the launcher runs.
 */
function kafkaVersion(): string {
  try {
    const processes = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
    const broker = processes.split('\n').find((line) => line.includes('kafka.Kafka'));
    const version = broker && /kafka_[\d.]+-(\d+\.\d+\.\d+)\.jar/.exec(broker)?.[1];
    return version || 'unknown (not a local broker process)';
  } catch {
    return 'unknown';
  }
}
