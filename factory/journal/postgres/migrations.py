"""Numbered schema migrations of the PostgreSQL journal, applied in order at start under an
advisory lock (stations starting together apply each once); a name is never reused or edited.

One database holds many stations: each event is (station, seq), each station its own hash
chain; a unit belongs to the fleet (its UCI and its live hardware id are unique across every
station), its `station` is the one that issued it.
"""

from __future__ import annotations

# pg_advisory_lock key of the migrations (any fixed number no other lock uses).
MIGRATION_LOCK = 0x66616374

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_initial",
        """
        CREATE TABLE events (
            -- Insertion order across stations (a unit's events may come from several).
            id BIGINT GENERATED ALWAYS AS IDENTITY,
            station TEXT NOT NULL,
            seq BIGINT NOT NULL,
            uci TEXT NOT NULL,
            kind TEXT NOT NULL,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            -- The canonical JSON text that was hashed (jsonb would not keep it byte for byte).
            data TEXT NOT NULL,
            -- SHA-256 of the station's previous event's hash and this event (chain.py).
            hash TEXT NOT NULL,
            PRIMARY KEY (station, seq)
        );
        CREATE INDEX events_uci ON events (uci, id) WHERE uci <> '';
        CREATE INDEX events_at ON events (station, at, kind);

        CREATE TABLE units (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            uci TEXT NOT NULL UNIQUE,
            product TEXT NOT NULL,
            hardware_id TEXT,
            state TEXT NOT NULL,
            station TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            -- The newest event of the unit: (station, seq) in that station's chain.
            last_station TEXT NOT NULL,
            last_seq BIGINT NOT NULL
        );
        -- One live UCI per product and hardware identity across the whole fleet: two
        -- stations racing for it both insert, the second waits for the first's commit and
        -- fails here, and plans again (it then finds the first's UCI).
        CREATE UNIQUE INDEX units_hardware ON units (product, hardware_id)
            WHERE hardware_id IS NOT NULL AND state <> 'voided';
        CREATE INDEX units_station_state ON units (station, state);
        CREATE INDEX units_hardware_any ON units (hardware_id) WHERE hardware_id IS NOT NULL;
        CREATE INDEX units_station_id ON units (station, id);

        CREATE TABLE idempotency (
            station TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            ucis TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (station, key)
        );

        CREATE TABLE tokens (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            station TEXT NOT NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT,
            UNIQUE (station, name)
        );

        -- Requests for the upstream, written with the step that causes them; each station's
        -- worker drains its own. `key` (action:UCI) makes a request once per unit, fleet-wide.
        CREATE TABLE outbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            station TEXT NOT NULL,
            uci TEXT NOT NULL,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,
            key TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
            last_error TEXT,
            state TEXT NOT NULL DEFAULT 'pending'
        );
        CREATE INDEX outbox_due ON outbox (station, next_at) WHERE state = 'pending';

        -- Labels the printer owes (as the SQLite journal's labels_owed): kept by a trigger
        -- from the events, so it follows the journal whatever the unit's state does.
        CREATE TABLE labels_owed (
            uci TEXT PRIMARY KEY,
            station TEXT NOT NULL,
            seq BIGINT NOT NULL
        );
        CREATE FUNCTION labels_owed_follow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.kind = 'labelled' AND (NEW.data::jsonb ->> 'pdf') IS NOT NULL
                    AND (NEW.data::jsonb ->> 'printer') IS NOT NULL THEN
                INSERT INTO labels_owed (uci, station, seq) VALUES (NEW.uci, NEW.station, NEW.seq)
                ON CONFLICT (uci) DO UPDATE SET station = EXCLUDED.station, seq = EXCLUDED.seq;
            ELSIF NEW.kind IN ('printed', 'print_failed', 'voided') THEN
                DELETE FROM labels_owed WHERE uci = NEW.uci;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER labels_owed_follow AFTER INSERT ON events FOR EACH ROW
            WHEN (NEW.kind IN ('labelled', 'printed', 'print_failed', 'voided'))
            EXECUTE FUNCTION labels_owed_follow();
        """,
    ),
    (
        "0002_bound",
        """
        -- Label-first lines (as the SQLite journal's 0005_bound): a pre-printed (already
        -- issued) UCI gets its unit's hardware id from its `bound` event. Never overwritten.
        CREATE FUNCTION units_bound() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE units SET hardware_id = NEW.data::jsonb ->> 'hardware_id'
            WHERE uci = NEW.uci AND hardware_id IS NULL;
            RETURN NULL;
        END $$;
        CREATE TRIGGER units_bound AFTER INSERT ON events FOR EACH ROW
            WHEN (NEW.kind = 'bound') EXECUTE FUNCTION units_bound();
        """,
    ),
)
