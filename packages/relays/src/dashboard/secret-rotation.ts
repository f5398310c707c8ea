import type { Database } from '@tidings/outbox';
import { resolveSchema } from '@tidings/outbox/internal';
import { webhookEndpoints } from '../webhook/endpoints.ts';
import { webhookTables } from '../webhook/schema.ts';
import type { SecretKeyring } from '../webhook/secret-keyring.ts';

/** The grace periods the confirmation offers, in ms, with their wording. */
export const graceChoices: ReadonlyArray<{ readonly ms: number; readonly label: string }> = [
  { ms: 0, label: 'none: the old secret stops signing at once' },
  { ms: 3_600_000, label: '1 hour' },
  { ms: 86_400_000, label: '24 hours' },
  { ms: 604_800_000, label: '7 days' },
];

/**
 * Rotates an endpoint's signing secret if the endpoint is still at `version`, the one the
 * confirmation page showed. Every change of an endpoint (a rotation among them) raises its
 * version, so a confirmation submitted twice (the browser's back button, a double click) rotates
 * once: the second finds a newer version and returns undefined. The row lock makes two
 * submissions at the same moment wait for each other.
 */
export async function rotateOnce(
  db: Database,
  options: { readonly schema: string | undefined; readonly keyring: SecretKeyring },
  id: string,
  version: number,
  gracePeriodMs: number,
): Promise<{ readonly secret: string; readonly previousValidUntil: Date | null } | undefined> {
  const { endpoints } = webhookTables(resolveSchema(options.schema));
  const registry = webhookEndpoints({ schema: options.schema, keyring: options.keyring });
  return db.transaction(async (trx) => {
    const { rows } = await trx.query(`SELECT 1 FROM ${endpoints} WHERE id = $1 AND version = $2 FOR UPDATE`, [id, version]);
    if (rows.length === 0) return undefined;
    return registry.rotateSecret(trx, id, { gracePeriodMs });
  });
}
