-- A rotated key names its successor, so one key is rotated at most once (a repeated rotate is a 409).
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;
