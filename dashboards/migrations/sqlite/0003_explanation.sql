-- How each request was classified and routed (detector kinds and spans, never
-- values; the rules checked and why), for the admin explain endpoint.
ALTER TABLE ledger ADD COLUMN explanation TEXT;
