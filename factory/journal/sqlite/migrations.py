"""Numbered schema migrations, applied in order at start; a name is never reused or edited."""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_initial",
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            -- units.id: sequential, so indexing it appends instead of inserting at random
            -- places as an index on the random UCIs would (half the pages per commit).
            unit_id INTEGER NOT NULL,
            uci TEXT NOT NULL,
            kind TEXT NOT NULL,
            at TEXT NOT NULL,
            station TEXT NOT NULL,
            actor TEXT NOT NULL,
            data TEXT NOT NULL,
            -- SHA-256 of the previous event's hash and this event's columns (chain.py).
            hash TEXT NOT NULL
        );
        CREATE INDEX events_unit ON events (unit_id, seq);

        -- Current state of each unit, kept in the same transaction as its events.
        CREATE TABLE units (
            id INTEGER PRIMARY KEY,
            uci TEXT NOT NULL UNIQUE,
            product TEXT NOT NULL,
            hardware_id TEXT,
            state TEXT NOT NULL,
            station TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            last_seq INTEGER NOT NULL
        );
        -- One live UCI per product and hardware identity; a voided unit frees its hardware.
        CREATE UNIQUE INDEX units_hardware ON units (product, hardware_id)
            WHERE hardware_id IS NOT NULL AND state <> 'voided';
        CREATE INDEX units_state ON units (state);
        CREATE INDEX units_hardware_any ON units (hardware_id) WHERE hardware_id IS NOT NULL;

        -- A unit row is made by its `issued` event, inside the same INSERT: the database
        -- derives it from the journal, and a batch needs one statement, not two.
        CREATE TRIGGER units_from_issued AFTER INSERT ON events WHEN NEW.kind = 'issued'
        BEGIN
            INSERT INTO units (id, uci, product, hardware_id, state, station, created_at,
                               updated_at, last_seq)
            VALUES (NEW.unit_id, NEW.uci, json_extract(NEW.data, '$.product'),
                    json_extract(NEW.data, '$.hardware_id'), 'issued', NEW.station, NEW.at,
                    NEW.at, NEW.seq);
        END;

        CREATE TABLE idempotency (
            key TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            ucis TEXT NOT NULL,
            created_at TEXT NOT NULL
        );

        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        """,
    ),
    (
        "0002_outbox",
        """
        -- Requests for the upstream, written in the same transaction as the step that causes
        -- them; a worker drains them. `key` (action:UCI) makes each request once per unit.
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            unit_id INTEGER NOT NULL,
            uci TEXT NOT NULL,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,
            key TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            state TEXT NOT NULL DEFAULT 'pending'
        );
        CREATE INDEX outbox_due ON outbox (next_at) WHERE state = 'pending';
        """,
    ),
    (
        "0003_labels_owed",
        """
        -- Labels the printer owes: a unit's newest `labelled` (with a PDF, for a printer)
        -- not yet followed by `printed` or a refusal. Kept by triggers, as `units` is, so it
        -- follows the journal whatever the unit's state does meanwhile (a unit registered
        -- upstream while its label waits for the printer still gets its label).
        CREATE TABLE labels_owed (
            unit_id INTEGER PRIMARY KEY,
            uci TEXT NOT NULL,
            seq INTEGER NOT NULL
        );
        CREATE TRIGGER label_owed AFTER INSERT ON events
            WHEN NEW.kind = 'labelled' AND json_extract(NEW.data, '$.pdf') IS NOT NULL
                 AND json_extract(NEW.data, '$.printer') IS NOT NULL
        BEGIN
            INSERT OR REPLACE INTO labels_owed (unit_id, uci, seq)
            VALUES (NEW.unit_id, NEW.uci, NEW.seq);
        END;
        CREATE TRIGGER label_paid AFTER INSERT ON events
            WHEN NEW.kind IN ('printed', 'print_failed', 'voided')
        BEGIN
            DELETE FROM labels_owed WHERE unit_id = NEW.unit_id;
        END;
        -- Journals from before: what waited for the printer was in state `labelled`.
        INSERT INTO labels_owed (unit_id, uci, seq)
            SELECT id, uci, last_seq FROM units WHERE state = 'labelled';
        """,
    ),
    (
        "0004_events_at",
        """
        -- Counting a time window finds its events by `at`, not by `seq`: `at` is the wall
        -- clock, which steps (back after it ran ahead), so it is not in `seq` order. With
        -- kind and unit_id in it, a window's count reads the index alone.
        CREATE INDEX events_at ON events (at, kind, unit_id);
        """,
    ),
    (
        "0005_bound",
        """
        -- Label-first lines: a pre-printed (already issued) UCI gets its unit's hardware id
        -- from its `bound` event, as an issued one gets it from `issued`. Never overwritten:
        -- a UCI is bound once (the station refuses a second binding before journaling it).
        CREATE TRIGGER units_bound AFTER INSERT ON events WHEN NEW.kind = 'bound'
        BEGIN
            UPDATE units SET hardware_id = json_extract(NEW.data, '$.hardware_id')
            WHERE id = NEW.unit_id AND hardware_id IS NULL;
        END;
        """,
    ),
)
