-- Signing secrets are stored encrypted (AES-256-GCM, the endpoint id as associated data) under a
-- key the database never sees: key_id names the key, nonce and ciphertext (with its 16-byte tag)
-- are base64. The unique key holds a digest of the secret instead of the secret.
--
-- Rows written before this migration keep their plaintext in `secret` until migrateWebhooks()
-- (or `tidings migrate`) runs with a key and encrypts them; new rows never fill `secret`.
ALTER TABLE {{schema}}.webhook_secrets DROP CONSTRAINT webhook_secrets_pkey;

ALTER TABLE {{schema}}.webhook_secrets
  ALTER COLUMN secret DROP NOT NULL,
  ADD COLUMN digest text,
  ADD COLUMN key_id text,
  ADD COLUMN nonce text,
  ADD COLUMN ciphertext text;

-- The same formula as secretDigest(): SHA-256 of 'tidings-webhook-secret:<endpoint id>:<secret>'.
UPDATE {{schema}}.webhook_secrets
SET digest = encode(sha256(convert_to('tidings-webhook-secret:' || endpoint_id || ':' || secret, 'UTF8')), 'base64');

ALTER TABLE {{schema}}.webhook_secrets
  ALTER COLUMN digest SET NOT NULL,
  ADD CONSTRAINT webhook_secrets_pkey PRIMARY KEY (endpoint_id, digest),
  ADD CONSTRAINT webhook_secrets_sealed CHECK (
    (secret IS NULL AND key_id IS NOT NULL AND nonce IS NOT NULL AND ciphertext IS NOT NULL)
    OR (secret IS NOT NULL AND key_id IS NULL AND nonce IS NULL AND ciphertext IS NULL)
  );

-- Finds the rows a key rotation (or the plaintext encryption) still has to rewrite.
CREATE INDEX webhook_secrets_key_id ON {{schema}}.webhook_secrets (key_id);
