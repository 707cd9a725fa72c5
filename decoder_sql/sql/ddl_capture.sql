-- DDL capture: every DDL statement is written into the WAL as a transactional logical message
-- with prefix 'ddl' and the capture channel's tag, at its exact position among the
-- transaction's changes. The decoder_sql output plugin prints such messages verbatim, so the
-- stream replays schema changes in order with the data. See docs/ddl-capture.md.
--
-- The event triggers run C functions of the library, which run only when PostgreSQL's
-- event-trigger machinery calls them (with its EventTriggerData context); those call the *_of functions below, which decide what to capture and
-- return the messages, and write the messages themselves with the channel's tag. The *_of
-- functions write nothing into the stream: calling them directly does nothing there.

-- What could not be captured, for the DBA to apply by hand. UNLOGGED: its rows must not enter
-- the logical stream (a restore target need not have this extension).
CREATE UNLOGGED TABLE decoder_sql.uncaptured (
    id          bigserial PRIMARY KEY,
    logged_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    command_tag text NOT NULL,
    reason      text NOT NULL,
    query       text
);
COMMENT ON TABLE decoder_sql.uncaptured IS
    'DDL that decoder_sql could not write into the logical backup stream (also marked there by a comment)';
GRANT USAGE ON SCHEMA decoder_sql TO PUBLIC;
GRANT SELECT, INSERT ON decoder_sql.uncaptured TO PUBLIC;
GRANT USAGE ON SEQUENCE decoder_sql.uncaptured_id_seq TO PUBLIC;

-- Records a DDL command that cannot be replayed from the stream: a row in
-- decoder_sql.uncaptured and a WARNING to the session; returns the one-line comment for the
-- stream. Never fails the DDL (unless decoder_sql.strict_capture is on).
CREATE FUNCTION decoder_sql.record_uncaptured(command_tag text, reason text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    query text := pg_catalog.current_query();
    excerpt text := pg_catalog.left(pg_catalog.regexp_replace(query, '\s+', ' ', 'g'), 200);
BEGIN
    -- decoder_sql.strict_capture = on: refuse the statement rather than leave a hole.
    IF pg_catalog.current_setting('decoder_sql.strict_capture', true) = 'on' THEN
        RAISE EXCEPTION 'decoder_sql: % cannot be captured into the logical backup stream', command_tag
            USING DETAIL = reason,
                  HINT = 'Load decoder_sql in every session (ALTER DATABASE ... SET session_preload_libraries = ''decoder_sql''; pgincr check --fix does it), or turn decoder_sql.strict_capture off.';
    END IF;
    INSERT INTO decoder_sql.uncaptured (command_tag, reason, query) VALUES (command_tag, reason, query);
    RAISE WARNING 'decoder_sql: % was not captured into the logical backup stream', command_tag
        USING DETAIL = reason,
              HINT = 'Replay it by hand after restoring; it is listed in decoder_sql.uncaptured.';
    RETURN '-- decoder_sql: NOT CAPTURED: ' || command_tag || ' (' || reason || ') in: ' || excerpt;
END
$fn$;

-- The messages of a captured statement: the search_path it ran with, the role it ran as
-- (current_user, the effective role: after SET ROLE, or a SECURITY DEFINER function's owner),
-- after SET ROLE also the session's own role (SESSION_USER), the statement, and a return to
-- the replaying session's own roles. Replayed as its author,
-- the statement creates objects with the same owner and default privileges, and
-- CURRENT_USER in it means the same role. Where the target has no such role (a restore
-- without globals), the statement runs as the restoring role.
--
-- The capture's own functions run with search_path pg_catalog, pg_temp (their SET clause):
-- a DDL statement may run under any search_path, and the event triggers fire in the session
-- of whoever ran it, possibly a superuser, so no operator or function of theirs may resolve
-- to an object another role placed earlier in that path. The statement's own search_path is
-- read by the C event-trigger functions and passed in.
CREATE FUNCTION decoder_sql.statement_messages(stmt text, statement_search_path text)
RETURNS SETOF text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    -- After SET ROLE the session's own role (SESSION_USER) differs too, and can take the
    -- statement's role again: both are replayed. Not when a SECURITY DEFINER function
    -- switched to a role the session could not have set itself.
    with_session boolean := session_user <> current_user
        AND pg_catalog.pg_has_role(session_user, current_user,
            CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 160000
                 THEN 'SET' ELSE 'MEMBER' END);
BEGIN
    RETURN NEXT decoder_sql.set_search_path_statement(statement_search_path);
    IF with_session THEN
        RETURN NEXT pg_catalog.format(
            'SELECT pg_catalog.set_config(''session_authorization'', rolname, false) FROM pg_catalog.pg_roles WHERE rolname = %L;',
            session_user);
    END IF;
    RETURN NEXT pg_catalog.format(
        'SELECT pg_catalog.set_config(''role'', rolname, false) FROM pg_catalog.pg_roles WHERE rolname = %L;',
        current_user);
    RETURN NEXT stmt;
    RETURN NEXT 'RESET ROLE;';
    IF with_session THEN
        RETURN NEXT 'RESET SESSION AUTHORIZATION;';
    END IF;
END
$fn$;

-- sql_drop runs before ddl_command_end of the same DROP: whether it dropped only temporary
-- objects, and which permanent ones when it dropped both (the C function keeps that for
-- ddl_command_end, which has no object list for DROP).
-- Whether an object depends, directly or through a few others, on an object of a temporary
-- schema: a function over a temporary table's row type, a domain over its array type. Such
-- objects are permanent in the catalog but go with the session (the temporary schema's
-- removal cascades to them), so they are as temporary as what they depend on.
CREATE FUNCTION decoder_sql.depends_on_temporary(object_classid oid, object_objid oid)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    WITH RECURSIVE refs(classid, objid, depth) AS (
        SELECT d.refclassid, d.refobjid, 1 FROM pg_catalog.pg_depend d
         WHERE d.classid = object_classid AND d.objid = object_objid AND d.deptype IN ('n', 'a')
        UNION
        SELECT d.refclassid, d.refobjid, r.depth + 1
          FROM refs r JOIN pg_catalog.pg_depend d
            ON d.classid = r.classid AND d.objid = r.objid AND d.deptype IN ('n', 'a')
         WHERE r.depth < 4
    )
    SELECT EXISTS (
        SELECT 1 FROM refs r
         WHERE CASE WHEN r.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                    THEN (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = r.objid)
                    ELSE (pg_catalog.pg_identify_object(r.classid, r.objid, 0)).schema
               END ~ '^pg_temp_[0-9]+$')
$fn$;

-- The objects of the statement at ddl_command_end when every one of them is temporary and
-- some only by depending on temporary ones (see depends_on_temporary); none otherwise.
CREATE FUNCTION decoder_sql.effectively_temporary_objects_of(OUT classid oid, OUT objid oid)
RETURNS SETOF record LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    WITH created AS (
        SELECT d.classid, d.objid, COALESCE(d.schema_name ~ '^pg_temp', false) AS in_temp,
               decoder_sql.depends_on_temporary(d.classid, d.objid) AS dependent
          FROM pg_catalog.pg_event_trigger_ddl_commands() d
    )
    SELECT c.classid, c.objid FROM created c
     WHERE c.dependent AND NOT c.in_temp
       AND NOT EXISTS (SELECT 1 FROM created o WHERE NOT (o.in_temp OR o.dependent))
$fn$;

-- effectively_temporary_classids/objids: the objects this session created that were
-- temporary only by dependence (see effectively_temporary_objects_of), whose DROP is as
-- temporary as they were.
CREATE FUNCTION decoder_sql.capture_sql_drop_of(effectively_temporary_classids oid[],
                                               effectively_temporary_objids oid[],
                                               OUT temp_only boolean, OUT permanent text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    some_temp boolean;
BEGIN
    -- Objects without a schema of their own (a view's or table's rules, triggers, policies,
    -- constraints, defaults) are temporary when the table they belong to is: the first of
    -- their address names is its schema.
    SELECT pg_catalog.bool_and(temp),
           pg_catalog.bool_or(temp) FILTER (WHERE original),
           pg_catalog.string_agg(object_identity, ', ') FILTER (WHERE original AND NOT temp)
      INTO temp_only, some_temp, permanent
      FROM (SELECT o.original, o.object_identity,
                   o.is_temporary
                   OR COALESCE(o.address_names[1] ~ '^pg_temp(_[0-9]+)?$', false)
                   OR (o.classid, o.objid) IN (
                          SELECT * FROM ROWS FROM (
                              pg_catalog.unnest(effectively_temporary_classids),
                              pg_catalog.unnest(effectively_temporary_objids))) AS temp
              FROM pg_catalog.pg_event_trigger_dropped_objects() o) AS dropped;
    temp_only := COALESCE(temp_only, false);
    -- DROP of temporary and permanent objects at once: only the permanent ones replay.
    IF NOT (some_temp AND NOT temp_only) THEN
        permanent := NULL;
    END IF;
END
$fn$;

-- The messages for a statement at ddl_command_end. dropped_temp_only and dropped_permanent
-- come from the statement's sql_drop event (NULL when it had none).
CREATE FUNCTION decoder_sql.capture_ddl_command_end_of(tg_tag text, statement_search_path text,
                                                       dropped_temp_only boolean, dropped_permanent text)
RETURNS SETOF text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    n_objects int;
    n_temp int;
    n_self int;
    stmt text;
BEGIN
    -- Objects created by an extension script come back with CREATE EXTENSION itself.
    IF decoder_sql.in_extension_script() THEN
        RETURN;
    END IF;
    -- Captured at ddl_command_start, before the rows they insert.
    IF tg_tag IN ('CREATE TABLE AS', 'SELECT INTO') THEN
        RETURN;
    END IF;
    -- (PostgreSQL 17+.) The utility hook writes the indexes a REINDEX made valid; the REINDEX
    -- itself changes nothing a replay could see.
    IF tg_tag = 'REINDEX' THEN
        RETURN;
    END IF;
    SELECT pg_catalog.count(*),
           pg_catalog.count(*) FILTER (WHERE schema_name ~ '^pg_temp'),
           pg_catalog.count(*) FILTER (WHERE object_type = 'extension' AND object_identity = 'decoder_sql')
      INTO n_objects, n_temp, n_self
      FROM pg_catalog.pg_event_trigger_ddl_commands();
    -- Temporary objects do not outlive their session; this extension is not part of the data.
    IF (n_objects > 0 AND n_objects = n_temp) OR n_self > 0 THEN
        RETURN;
    END IF;
    IF n_objects = 0 AND dropped_temp_only THEN
        RETURN;
    END IF;
    stmt := decoder_sql.capture_statement(tg_tag);
    IF stmt IS NULL THEN
        RETURN NEXT decoder_sql.record_uncaptured(tg_tag, 'run inside a function, procedure or DO block in a session that had not loaded decoder_sql (session_preload_libraries)');
        RETURN;
    END IF;
    IF stmt = '' THEN
        RETURN; -- temporary objects only
    END IF;
    IF COALESCE(dropped_permanent, '') <> '' THEN
        -- object_identity is quoted and schema-qualified; the command tag names the kind.
        stmt := tg_tag || ' ' || dropped_permanent
             || CASE WHEN stmt ~* '\mCASCADE\s*;?\s*$' THEN ' CASCADE;' ELSE ';' END;
    END IF;
    RETURN QUERY SELECT decoder_sql.statement_messages(stmt, statement_search_path);
END
$fn$;

-- The table the CREATE TABLE at ddl_command_end made, as statements built from the catalog
-- (names schema-qualified): for CREATE TABLE (LIKE temp_t ...), whose temporary table the
-- replay does not have. Columns with their types, collations, defaults, generated and
-- identity columns and NOT NULL; constraints and indexes under their names; extended
-- statistics; comments; UNLOGGED, INHERITS, PARTITION BY, storage parameters, tablespace.
CREATE FUNCTION decoder_sql.created_table_definition() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    rel oid;
    r record;
    name text;
    elements text;
    out text;
BEGIN
    SELECT d.objid INTO rel FROM pg_catalog.pg_event_trigger_ddl_commands() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.object_type = 'table'
     LIMIT 1;
    IF rel IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.*, n.nspname INTO r FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    name := pg_catalog.format('%I.%I', r.nspname, r.relname);
    SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname,
               pg_catalog.format_type(a.atttypid, a.atttypmod))
           || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                   THEN (SELECT pg_catalog.format(' COLLATE %I.%I', cn.nspname, co.collname)
                           FROM pg_catalog.pg_collation co
                           JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                          WHERE co.oid = a.attcollation)
                   ELSE '' END
           || CASE WHEN a.attidentity IN ('a', 'd') THEN
                   CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                      ELSE ' GENERATED BY DEFAULT AS IDENTITY' END
                   || COALESCE((SELECT pg_catalog.format(
                          ' (START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s %sCYCLE)',
                          q.seqstart, q.seqincrement,
                          q.seqmin, q.seqmax, q.seqcache, CASE WHEN q.seqcycle THEN '' ELSE 'NO ' END)
                          FROM pg_catalog.pg_sequence q
                         WHERE q.seqrelid = pg_catalog.pg_get_serial_sequence(name, a.attname)::pg_catalog.regclass), '')
                   ELSE '' END
           || CASE WHEN a.attgenerated = 's'
                   THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                   WHEN ad.adbin IS NOT NULL
                   THEN ' DEFAULT ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)
                   ELSE '' END
           -- (PostgreSQL 18 keeps NOT NULL constraints, with their names, in pg_constraint.)
           || CASE WHEN a.attnotnull THEN
                   COALESCE((SELECT pg_catalog.format(' CONSTRAINT %I', co.conname)
                               FROM pg_catalog.pg_constraint co
                              WHERE co.conrelid = rel AND co.contype = 'n'
                                AND co.conkey = ARRAY[a.attnum] LIMIT 1), '') || ' NOT NULL'
                   ELSE '' END,
           ', ' ORDER BY a.attnum)
      INTO elements
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attinhcount = 0;
    SELECT pg_catalog.concat_ws(', ', elements, pg_catalog.string_agg(
               pg_catalog.format('CONSTRAINT %I %s', co.conname, pg_catalog.pg_get_constraintdef(co.oid)),
               ', ' ORDER BY co.conname))
      INTO elements
      FROM pg_catalog.pg_constraint co
     WHERE co.conrelid = rel AND co.contype IN ('c', 'p', 'u', 'x', 'f') AND co.conislocal;
    out := 'CREATE ' || CASE r.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END
        || 'TABLE ' || name || ' (' || COALESCE(elements, '') || ')'
        || COALESCE((SELECT ' INHERITS (' || pg_catalog.string_agg(
                         pg_catalog.format('%I.%I', pn.nspname, p.relname), ', ' ORDER BY i.inhseqno) || ')'
                       FROM pg_catalog.pg_inherits i
                       JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
                       JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
                      WHERE i.inhrelid = rel HAVING pg_catalog.count(*) > 0), '')
        || CASE WHEN r.relkind = 'p' THEN ' PARTITION BY ' || pg_catalog.pg_get_partkeydef(rel) ELSE '' END
        || COALESCE(' WITH (' || pg_catalog.array_to_string(r.reloptions, ', ') || ')', '')
        || COALESCE((SELECT pg_catalog.format(' TABLESPACE %I', s.spcname)
                       FROM pg_catalog.pg_tablespace s WHERE s.oid = r.reltablespace), '')
        || ';';
    -- An identity sequence LIKE made of another type than its column's (the column's type
    -- is all GENERATED ... AS IDENTITY can say).
    SELECT out || COALESCE(pg_catalog.string_agg(pg_catalog.format(
               E'\nALTER SEQUENCE %s AS %s MINVALUE %s MAXVALUE %s;',
               pg_catalog.pg_get_serial_sequence(name, a.attname),
               pg_catalog.format_type(q.seqtypid, NULL), q.seqmin, q.seqmax), '' ORDER BY a.attnum), '')
      INTO out
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_sequence q
        ON q.seqrelid = pg_catalog.pg_get_serial_sequence(name, a.attname)::pg_catalog.regclass
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity IN ('a', 'd')
       AND q.seqtypid <> a.atttypid;
    -- Indexes that back no constraint, extended statistics, comments.
    SELECT out || COALESCE(pg_catalog.string_agg(E'\n' || pg_catalog.pg_get_indexdef(i.indexrelid) || ';',
                                                  '' ORDER BY i.indexrelid), '')
      INTO out
      FROM pg_catalog.pg_index i
     WHERE i.indrelid = rel
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co
                        WHERE co.conrelid = rel AND co.conindid = i.indexrelid);
    SELECT out || COALESCE(pg_catalog.string_agg(E'\n' || pg_catalog.pg_get_statisticsobjdef(x.oid) || ';',
                                                  '' ORDER BY x.oid), '')
      INTO out
      FROM pg_catalog.pg_statistic_ext x WHERE x.stxrelid = rel;
    SELECT out || COALESCE(pg_catalog.string_agg(E'\n' || CASE WHEN d.objsubid = 0
                    THEN pg_catalog.format('COMMENT ON TABLE %s IS %L;', name, d.description)
                    ELSE pg_catalog.format('COMMENT ON COLUMN %s.%I IS %L;', name,
                             (SELECT a.attname FROM pg_catalog.pg_attribute a
                               WHERE a.attrelid = rel AND a.attnum = d.objsubid), d.description)
                    END, '' ORDER BY d.objsubid), '')
      INTO out
      FROM pg_catalog.pg_description d
     WHERE d.objoid = rel AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass;
    RETURN out;
END
$fn$;

-- CREATE TABLE AS / SELECT INTO write their rows before ddl_command_end; the table must be
-- created (empty) in the stream before those rows.
CREATE FUNCTION decoder_sql.capture_ddl_command_start_of(tg_tag text, statement_search_path text)
RETURNS SETOF text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    stmt text;
BEGIN
    IF decoder_sql.in_extension_script() THEN
        RETURN;
    END IF;
    stmt := decoder_sql.create_table_as_statement(tg_tag);
    IF stmt IS NULL THEN
        RETURN NEXT decoder_sql.record_uncaptured(tg_tag, CASE tg_tag
            WHEN 'SELECT INTO' THEN 'SELECT INTO cannot be replayed before its rows; use CREATE TABLE AS'
            ELSE 'run inside a function, procedure or DO block in a session that had not loaded decoder_sql (session_preload_libraries)' END);
        RETURN;
    END IF;
    IF stmt = '' THEN
        RETURN; -- temporary table
    END IF;
    RETURN QUERY SELECT decoder_sql.statement_messages(stmt, statement_search_path);
END
$fn$;

-- UPDATE and DELETE of a table without a usable replica identity cannot be decoded, which
-- would stop the backup. Unless the database sets decoder_sql.missing_identity to 'skip' or
-- 'error' (pgincr init --missing-identity), a permanent table that CREATE TABLE or ALTER
-- TABLE leaves without a primary key or replica identity index gets REPLICA IDENTITY FULL,
-- written into the stream after the statement, with a NOTICE.
-- Returns the fixes it made, for the stream.
CREATE FUNCTION decoder_sql.ensure_replica_identity_of() RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    rel record;
    fix text;
BEGIN
    IF COALESCE(pg_catalog.current_setting('decoder_sql.missing_identity', true), '')
           NOT IN ('', 'full')
       OR decoder_sql.in_extension_script() THEN
        RETURN;
    END IF;
    FOR rel IN
        -- The tables the statement touched, and every partition under a partitioned one
        -- (dropping a partitioned table's key drops it from all its partitions).
        -- (The partition tree only of partitioned tables: it is the costly part, and most
        -- statements touch plain tables only.)
        WITH touched AS (
            SELECT c.oid, c.relkind
              FROM pg_catalog.pg_event_trigger_ddl_commands() d
              JOIN pg_catalog.pg_class c ON c.oid = d.objid
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
               AND c.relkind IN ('r', 'p')
        )
        SELECT DISTINCT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name
          FROM (SELECT oid AS objid FROM touched WHERE relkind = 'r'
                UNION
                SELECT t.relid FROM touched, pg_catalog.pg_partition_tree(touched.oid) t
                 WHERE touched.relkind = 'p') r
          JOIN pg_catalog.pg_class c ON c.oid = r.objid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND c.relpersistence = 'p'
           AND c.relreplident <> 'f'
           AND NOT (c.relreplident = 'd' AND EXISTS (
                   SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
           AND NOT (c.relreplident = 'i' AND EXISTS (
                   SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident))
         ORDER BY 1
    LOOP
        fix := pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY FULL', rel.name);
        BEGIN
            EXECUTE fix;
            -- Fully qualified: any search_path replays it.
            RETURN NEXT decoder_sql.set_search_path_statement('pg_catalog');
            RETURN NEXT fix || ';';
        EXCEPTION WHEN OTHERS THEN
            -- Never fail the user's statement for this (not the owner of the table, say).
            RAISE WARNING 'decoder_sql: could not give % a replica identity: %', rel.name, SQLERRM
                USING HINT = 'Its updates and deletes stop the backup stream until it has a primary key or REPLICA IDENTITY FULL.';
            CONTINUE;
        END;
        RAISE NOTICE 'decoder_sql: % has no primary key or replica identity index; set REPLICA IDENTITY FULL so that its updates and deletes are backed up', rel.name
            USING HINT = 'Add a primary key for cheaper updates and deletes, or set decoder_sql.missing_identity for this database.';
    END LOOP;
END
$fn$;

-- The event triggers' C functions (src/pg/event_trigger.rs).
CREATE FUNCTION decoder_sql.capture_ddl_command_end() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'decoder_sql_ddl_command_end';
CREATE FUNCTION decoder_sql.capture_ddl_command_start() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'decoder_sql_ddl_command_start';
CREATE FUNCTION decoder_sql.capture_sql_drop() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'decoder_sql_sql_drop';
CREATE FUNCTION decoder_sql.ensure_replica_identity() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'decoder_sql_replica_identity';

CREATE EVENT TRIGGER decoder_sql_ddl_capture ON ddl_command_end
    EXECUTE FUNCTION decoder_sql.capture_ddl_command_end();
-- Named to fire after decoder_sql_ddl_capture (event triggers fire in name order), so the
-- fix follows the statement in the stream.
CREATE EVENT TRIGGER decoder_sql_replica_identity ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'DROP INDEX',
                 'CREATE SCHEMA')
    EXECUTE FUNCTION decoder_sql.ensure_replica_identity();
CREATE EVENT TRIGGER decoder_sql_ddl_capture_start ON ddl_command_start
    WHEN TAG IN ('CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION decoder_sql.capture_ddl_command_start();
CREATE EVENT TRIGGER decoder_sql_sql_drop ON sql_drop
    EXECUTE FUNCTION decoder_sql.capture_sql_drop();
-- ENABLE ALWAYS: DDL run under session_replication_role = replica must be captured too.
ALTER EVENT TRIGGER decoder_sql_ddl_capture ENABLE ALWAYS;
ALTER EVENT TRIGGER decoder_sql_ddl_capture_start ENABLE ALWAYS;
ALTER EVENT TRIGGER decoder_sql_sql_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER decoder_sql_replica_identity ENABLE ALWAYS;

-- Pausing disables the event triggers (persistently, transactionally); DDL run while paused
-- is not in the stream.
CREATE FUNCTION decoder_sql.pause_capture() RETURNS void LANGUAGE sql AS $fn$
    ALTER EVENT TRIGGER decoder_sql_ddl_capture DISABLE;
    ALTER EVENT TRIGGER decoder_sql_ddl_capture_start DISABLE;
    ALTER EVENT TRIGGER decoder_sql_sql_drop DISABLE;
    ALTER EVENT TRIGGER decoder_sql_replica_identity DISABLE;
$fn$;

CREATE FUNCTION decoder_sql.resume_capture() RETURNS void LANGUAGE sql AS $fn$
    ALTER EVENT TRIGGER decoder_sql_ddl_capture ENABLE ALWAYS;
    ALTER EVENT TRIGGER decoder_sql_ddl_capture_start ENABLE ALWAYS;
    ALTER EVENT TRIGGER decoder_sql_sql_drop ENABLE ALWAYS;
    ALTER EVENT TRIGGER decoder_sql_replica_identity ENABLE ALWAYS;
$fn$;

-- 'enabled', 'paused', or 'partial' (some triggers disabled).
CREATE FUNCTION decoder_sql.capture_status() RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT CASE WHEN pg_catalog.bool_and(evtenabled <> 'D') THEN 'enabled'
                WHEN pg_catalog.bool_and(evtenabled = 'D') THEN 'paused'
                ELSE 'partial' END
      FROM pg_catalog.pg_event_trigger
     WHERE evtname IN ('decoder_sql_ddl_capture', 'decoder_sql_ddl_capture_start', 'decoder_sql_sql_drop',
                       'decoder_sql_replica_identity');
$fn$;

-- Sequences are not decoded by PostgreSQL. The current state of every permanent sequence of
-- the database as `SELECT pg_catalog.setval(...)` statements, which
-- decoder_sql.snapshot_sequences() writes into the stream.
CREATE FUNCTION decoder_sql.sequence_snapshot_statements() RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    seq record;
    last bigint;
    called boolean;
BEGIN
    FOR seq IN
        SELECT c.oid::regclass AS name, pg_catalog.format('%I.%I', s.nspname, c.relname) AS qualified
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
         WHERE c.relkind = 'S' AND c.relpersistence = 'p'
           AND s.nspname NOT IN ('pg_catalog', 'information_schema')
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                              AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1::text
    LOOP
        EXECUTE pg_catalog.format('SELECT last_value, is_called FROM %s', seq.name) INTO last, called;
        RETURN NEXT pg_catalog.format('SELECT pg_catalog.setval(%L, %s, %s);', seq.qualified, last,
            CASE WHEN called THEN 'true' ELSE 'false' END);
    END LOOP;
END
$fn$;
