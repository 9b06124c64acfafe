#!/bin/sh
# Run once by the postgres image on an empty data directory.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE unity LOGIN CREATEDB PASSWORD '${UNITY_DB_PASSWORD}';
CREATE DATABASE unity OWNER unity;
SQL
