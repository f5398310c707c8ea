import { migrate } from '@tidings/outbox';
import { migrateInbox } from '@tidings/inbox';
import { migrateWebhooks } from '../../webhook/index.ts';
import { databaseFlags, parseFlags, wholeNumber } from '../args.ts';
import { openDatabase } from '../database.ts';

export const help = `tidings migrate: create or upgrade the outbox, inbox and webhook tables (safe to run again)

  --database URL     PostgreSQL URL (default: DATABASE_URL, else the embedded database in .tidings/)
  --schema NAME      schema to use (default: tidings)
  --partitions N     partitions of a new outbox (default: 16; fixed once created)`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseFlags('migrate', args, { ...databaseFlags, partitions: { type: 'string' } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const partitions = wholeNumber('partitions', values.partitions);
  const { db, where, close, keyring } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  try {
    const schema = values.schema;
    const outbox = await migrate(db, { schema, partitions });
    const inbox = await migrateInbox(db, { schema });
    const webhook = await migrateWebhooks(db, { schema, keyring: await keyring() });
    for (const result of [outbox, inbox, webhook]) {
      console.log(`${result.component}: ${result.applied.length ? `applied ${result.applied.join(', ')}` : 'up to date'}`);
    }
    if (webhook.encryptedSecrets > 0) console.log(`webhook: encrypted ${webhook.encryptedSecrets} signing secrets stored in plaintext by an older version`);
    console.log(`database: ${where}`);
    return 0;
  } finally {
    await close();
  }
}
