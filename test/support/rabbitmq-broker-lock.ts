import pg from 'pg';
import { afterEach, beforeEach } from 'vitest';
import { services } from './env.ts';

/** Advisory lock key: "rabbitmq" as ASCII, an arbitrary constant shared by every RabbitMQ test file. */
const brokerLock = 0x7261626269746d71n;

/**
 * Test files run in parallel, and all of them use the one local RabbitMQ. Tests that restart it or
 * raise a resource alarm take this lock exclusively; every other RabbitMQ test holds it shared
 * while it runs, so a disruption never lands in the middle of someone else's test. The lock is a
 * PostgreSQL advisory lock, held by a session of its own: it works across vitest's workers.
 */
export async function holdBroker(mode: 'shared' | 'exclusive'): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: services.postgres });
  client.on('error', () => {});
  await client.connect();
  await client.query(mode === 'shared' ? 'SELECT pg_advisory_lock_shared($1)' : 'SELECT pg_advisory_lock($1)', [brokerLock.toString()]);
  // Ending the session releases the lock.
  return () => client.end().catch(() => {});
}

/** Holds the broker lock shared around each test of the enclosing file or describe block. */
export function shareBrokerPerTest(): void {
  let release: (() => Promise<void>) | undefined;
  beforeEach(async () => {
    release = await holdBroker('shared');
  });
  afterEach(async () => {
    await release?.();
    release = undefined;
  });
}

/** Runs `body` with the broker to itself: no other RabbitMQ test is running meanwhile. */
export async function withBrokerToMyself<T>(body: () => Promise<T>): Promise<T> {
  const release = await holdBroker('exclusive');
  try {
    return await body();
  } finally {
    await release();
  }
}
