import { PrismaPg } from '@prisma/adapter-pg';
import { services } from '../support/env.ts';
import { describeOrmHandle } from './orm-suite.ts';

/** The parts of the generated client the suite uses (the client is generated before the run, see prisma/generate.ts). */
interface PrismaTx {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>;
}
interface PrismaClientLike extends PrismaTx {
  $transaction<R>(fn: (tx: PrismaTx) => Promise<R>): Promise<R>;
  $disconnect(): Promise<void>;
}

// Imported by a path that the type check does not follow: the generated client exists only after generate.ts ran.
const generated = './prisma/generated/client.ts';
const { PrismaClient } = (await import(generated)) as { PrismaClient: new (options: { adapter: PrismaPg }) => PrismaClientLike };

describeOrmHandle<PrismaTx>('Prisma: the client of an interactive $transaction()', async (schema) => {
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: services.postgres, max: 4 }) });
  return {
    transaction: (fn) => prisma.$transaction((tx) => fn(tx)),
    txid: async (tx) => (await tx.$queryRawUnsafe<{ t: string }[]>('SELECT txid_current()::text AS t'))[0]!.t,
    insert: async (tx, table, id) => {
      await tx.$executeRawUnsafe(`INSERT INTO "${schema}".${table} (id) VALUES ($1)`, id);
    },
    swallowError: async (tx) => {
      await tx.$queryRawUnsafe('SELECT 1/0').catch(() => {});
    },
    source: prisma,
    outside: [prisma],
    close: () => prisma.$disconnect(),
  };
});
