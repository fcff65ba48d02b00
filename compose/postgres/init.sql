-- Run once by the postgres image, when its volume is first created
-- (/docker-entrypoint-initdb.d), as the superuser.
--
-- Two databases:
--   bulwark  Bulwark's storage (every service's sealed rows), owned by `bulwark`.
--   app      an application database: the target of the database secrets
--            engine, owned by `dbadmin`, the role Bulwark connects as to
--            create and drop short-lived users.
-- Change these passwords (and connection_url in config/*.hcl) for anything
-- but a local trial.

CREATE ROLE bulwark WITH LOGIN PASSWORD 'bulwark-password';
CREATE DATABASE bulwark OWNER bulwark;

-- CREATEROLE, not SUPERUSER: enough to create the dynamic users, grant them
-- what dbadmin owns in `app`, and drop them again.
CREATE ROLE dbadmin WITH LOGIN CREATEROLE PASSWORD 'dbadmin-password';
CREATE DATABASE app OWNER dbadmin;

\connect app
SET ROLE dbadmin;
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO items (name) VALUES ('first'), ('second');
