-- The look-alike key of each username (model::username_skeleton): a new name whose key an
-- existing name has is refused. Filled for existing rows at start-up (it is computed in
-- Rust); not unique here because rows from before may already collide.
ALTER TABLE users ADD COLUMN skeleton TEXT;
CREATE INDEX users_by_skeleton ON users (skeleton);
