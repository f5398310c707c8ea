-- The webhook endpoint registry. {{schema}} is filled in by the migration runner; the tables sit
-- beside the outbox's, and each endpoint is relayed by a relay named webhook:<id>.

CREATE TABLE {{schema}}.webhook_endpoints (
  id text PRIMARY KEY,
  url text NOT NULL,
  description text NOT NULL DEFAULT '',
  -- Topic names or prefixes ending in '*'; NULL: every topic.
  topics text[],
  -- The tenant whose events the endpoint receives; NULL: every event (an endpoint of your own).
  tenant text,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  enabled boolean NOT NULL DEFAULT true,
  disabled_reason text CHECK (disabled_reason IN ('manual', 'gone', 'failing')),
  disabled_detail text,
  disabled_at timestamptz,
  -- Health: when the current run of failed attempts began (NULL while deliveries succeed).
  failing_since timestamptz,
  last_error text,
  last_error_at timestamptz,
  -- Bumped by every change, so dispatchers know to reload the endpoint.
  version bigint NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (enabled = (disabled_reason IS NULL))
);
CREATE INDEX webhook_endpoints_tenant ON {{schema}}.webhook_endpoints (tenant, id);

-- Signing secrets: the current one (expires_at NULL) and, during a rotation, older ones that sign
-- too until they expire. A rotation expires the current secret and inserts the new one in a single
-- statement, so "one current secret per endpoint" is kept by the registry, not by an index.
CREATE TABLE {{schema}}.webhook_secrets (
  endpoint_id text NOT NULL REFERENCES {{schema}}.webhook_endpoints (id) ON DELETE CASCADE,
  secret text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  PRIMARY KEY (endpoint_id, secret)
);
