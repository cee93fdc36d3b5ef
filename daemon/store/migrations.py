"""Named migrations, frozen: each is the SQLite DDL it ran when it was released.

A released migration is never edited; a schema change adds the next number here and the same
change to daemon/store/schema.py (the tables the code queries). tests/test_migrations.py checks
that a fresh database, and one upgraded from every earlier release, match schema.py.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect

Migration = tuple[str, Callable[[Connection], None]]

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name VARCHAR NOT NULL,
    applied_at FLOAT NOT NULL,
    PRIMARY KEY (name)
)"""

_0001_INITIAL = (
    """CREATE TABLE images (
    sha256 VARCHAR(64) NOT NULL,
    path TEXT NOT NULL,
    original_name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    format VARCHAR(8) NOT NULL,
    mtime FLOAT NOT NULL,
    phash VARCHAR(16),
    first_seen FLOAT NOT NULL,
    last_seen FLOAT NOT NULL,
    state VARCHAR(16) NOT NULL,
    PRIMARY KEY (sha256)
)""",
    """CREATE TABLE image_metadata (
    sha256 VARCHAR(64) NOT NULL,
    prompt TEXT,
    negative_prompt TEXT,
    seed INTEGER,
    batch_id TEXT,
    model TEXT,
    sources TEXT NOT NULL,
    raw TEXT NOT NULL,
    PRIMARY KEY (sha256),
    FOREIGN KEY(sha256) REFERENCES images (sha256)
)""",
    """CREATE TABLE files (
    path TEXT NOT NULL,
    sha256 VARCHAR(64) NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    seen_at FLOAT NOT NULL,
    PRIMARY KEY (path)
)""",
    "CREATE INDEX ix_files_sha256 ON files (sha256)",
    """CREATE TABLE sets (
    id VARCHAR(64) NOT NULL,
    created_at FLOAT NOT NULL,
    source VARCHAR(16) NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    folder TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    PRIMARY KEY (id)
)""",
    """CREATE TABLE set_members (
    set_id VARCHAR(64) NOT NULL,
    sha256 VARCHAR(64) NOT NULL,
    position INTEGER NOT NULL,
    near_duplicate_of VARCHAR(64),
    PRIMARY KEY (set_id, sha256),
    FOREIGN KEY(set_id) REFERENCES sets (id),
    FOREIGN KEY(sha256) REFERENCES images (sha256)
)""",
    "CREATE INDEX ix_set_members_sha ON set_members (sha256)",
    """CREATE TABLE jobs (
    id INTEGER NOT NULL,
    sha256 VARCHAR(64) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    version INTEGER NOT NULL,
    state VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT,
    created_at FLOAT NOT NULL,
    updated_at FLOAT NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_job UNIQUE (sha256, kind, version)
)""",
    "CREATE INDEX ix_jobs_state ON jobs (state, id)",
    """CREATE TABLE sidecars (
    sha256 VARCHAR(64) NOT NULL,
    extractor VARCHAR(32) NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT NOT NULL,
    blob BLOB,
    files TEXT,
    created_at FLOAT NOT NULL,
    PRIMARY KEY (sha256, extractor, version)
)""",
    """CREATE TABLE errors (
    id INTEGER NOT NULL,
    ts FLOAT NOT NULL,
    path TEXT,
    sha256 VARCHAR(64),
    stage VARCHAR(32) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    reason TEXT NOT NULL,
    resolved BOOLEAN NOT NULL,
    PRIMARY KEY (id)
)""",
    "CREATE INDEX ix_errors_path ON errors (path)",
    """CREATE TABLE journal (
    id INTEGER NOT NULL,
    batch_id VARCHAR(64),
    op VARCHAR(16) NOT NULL,
    src TEXT NOT NULL,
    dst TEXT NOT NULL,
    sha256 VARCHAR(64),
    state VARCHAR(16) NOT NULL,
    created_at FLOAT NOT NULL,
    finished_at FLOAT,
    note TEXT,
    PRIMARY KEY (id)
)""",
    """CREATE TABLE decisions (
    id INTEGER NOT NULL,
    ts FLOAT NOT NULL,
    set_id VARCHAR(64) NOT NULL,
    winner VARCHAR(64),
    needs_crop BOOLEAN NOT NULL,
    deleted TEXT NOT NULL,
    crop_box TEXT,
    anomaly_tags TEXT NOT NULL,
    source VARCHAR(16) NOT NULL,
    supersedes INTEGER,
    closed_reason TEXT,
    line TEXT NOT NULL,
    logged BOOLEAN NOT NULL,
    PRIMARY KEY (id)
)""",
    "CREATE INDEX ix_decisions_set_id ON decisions (set_id)",
    """CREATE TABLE pairs (
    decision_id INTEGER NOT NULL,
    winner VARCHAR(64) NOT NULL,
    loser VARCHAR(64) NOT NULL,
    PRIMARY KEY (decision_id, winner, loser),
    FOREIGN KEY(decision_id) REFERENCES decisions (id)
)""",
    """CREATE TABLE state (
    "key" VARCHAR(64) NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY ("key")
)""",
)

_0002_DUP_GROUPS = (
    """CREATE TABLE dup_groups (
    sha256 VARCHAR(64) NOT NULL,
    group_id VARCHAR(64) NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (sha256)
)""",
    "CREATE INDEX ix_dup_groups_group_id ON dup_groups (group_id)",
)

_0003_OBSERVATIONS_CROPS = (
    """CREATE TABLE observations (
    sha256 VARCHAR(64) NOT NULL,
    location VARCHAR(16) NOT NULL,
    moved_at FLOAT NOT NULL,
    PRIMARY KEY (sha256)
)""",
    """CREATE TABLE crops (
    crop_sha256 VARCHAR(64) NOT NULL,
    file TEXT NOT NULL,
    source_sha256 VARCHAR(64) NOT NULL,
    "match" TEXT NOT NULL,
    observed_at FLOAT NOT NULL,
    PRIMARY KEY (crop_sha256)
)""",
    "CREATE INDEX ix_crops_source_sha256 ON crops (source_sha256)",
)

_0004_PROPOSALS = (
    """CREATE TABLE proposals (
    id INTEGER NOT NULL,
    set_id VARCHAR(64) NOT NULL,
    ts FLOAT NOT NULL,
    model_version VARCHAR(64) NOT NULL,
    source VARCHAR(16) NOT NULL,
    winner VARCHAR(64) NOT NULL,
    confidence FLOAT NOT NULL,
    margin FLOAT NOT NULL,
    uncertain BOOLEAN NOT NULL,
    mode VARCHAR(16) NOT NULL,
    body TEXT NOT NULL,
    batch_id VARCHAR(64),
    PRIMARY KEY (id)
)""",
    "CREATE INDEX ix_proposals_set_id ON proposals (set_id)",
)


# Indexes for the queries each worker round runs, and the sets whose proposal may be due, kept by
# the database itself (triggers), so a round reads what changed instead of scanning the library.
# The triggers test for the row instead of INSERT OR IGNORE: an UPSERT that fires them imposes its
# own conflict policy (ABORT) on their statements.
_0006_ROUND_INDEXES_PROPOSAL_DUE = (
    "CREATE INDEX ix_sets_status ON sets (status)",
    "CREATE INDEX ix_images_path ON images (path)",
    # Present images in arrival order, with the pHash: near-duplicate neighbours by mtime.
    "CREATE INDEX ix_images_state_mtime ON images (state, mtime, sha256, phash)",
    # Sidecars written since a moment (near-duplicates compare only the new images). Time alone:
    # with the extractor first, SQLite would prefer it to the key when looking up an image's rows.
    "CREATE INDEX ix_sidecars_created_at ON sidecars (created_at)",
    """CREATE TABLE proposal_due (
    set_id VARCHAR(64) NOT NULL,
    PRIMARY KEY (set_id)
)""",
    """CREATE TRIGGER proposal_due_set_filed AFTER INSERT ON sets WHEN NEW.status = 'filed'
BEGIN
    INSERT INTO proposal_due (set_id) SELECT NEW.id WHERE NOT EXISTS (SELECT 1 FROM proposal_due WHERE set_id = NEW.id);
END""",
    """CREATE TRIGGER proposal_due_set_refiled AFTER UPDATE OF status ON sets WHEN NEW.status = 'filed'
BEGIN
    INSERT INTO proposal_due (set_id) SELECT NEW.id WHERE NOT EXISTS (SELECT 1 FROM proposal_due WHERE set_id = NEW.id);
END""",
    """CREATE TRIGGER proposal_due_sidecar_added AFTER INSERT ON sidecars
WHEN NEW.extractor IN ('anomalies', 'crop')
BEGIN
    INSERT INTO proposal_due (set_id) SELECT m.set_id FROM set_members m WHERE m.sha256 = NEW.sha256
        AND NOT EXISTS (SELECT 1 FROM proposal_due d WHERE d.set_id = m.set_id);
END""",
    """CREATE TRIGGER proposal_due_sidecar_updated AFTER UPDATE ON sidecars
WHEN NEW.extractor IN ('anomalies', 'crop')
BEGIN
    INSERT INTO proposal_due (set_id) SELECT m.set_id FROM set_members m WHERE m.sha256 = NEW.sha256
        AND NOT EXISTS (SELECT 1 FROM proposal_due d WHERE d.set_id = m.set_id);
END""",
    """CREATE TRIGGER proposal_due_job_ended AFTER UPDATE OF state ON jobs
WHEN OLD.state IN ('pending', 'running') AND NEW.state NOT IN ('pending', 'running')
BEGIN
    INSERT INTO proposal_due (set_id) SELECT m.set_id FROM set_members m WHERE m.sha256 = NEW.sha256
        AND NOT EXISTS (SELECT 1 FROM proposal_due d WHERE d.set_id = m.set_id);
END""",
    """CREATE TRIGGER proposal_due_job_removed AFTER DELETE ON jobs WHEN OLD.state IN ('pending', 'running')
BEGIN
    INSERT INTO proposal_due (set_id) SELECT m.set_id FROM set_members m WHERE m.sha256 = OLD.sha256
        AND NOT EXISTS (SELECT 1 FROM proposal_due d WHERE d.set_id = m.set_id);
END""",
)


# How many images are present (and present with a pHash), and how many left that state, kept by
# the database itself: a round reads one row instead of counting the library.
_HASHED_OLD = "(OLD.state = 'present' AND OLD.phash IS NOT NULL)"
_HASHED_NEW = "(NEW.state = 'present' AND NEW.phash IS NOT NULL)"
_0007_IMAGE_COUNTS = (
    """CREATE TABLE image_counts (
    id INTEGER NOT NULL,
    present INTEGER NOT NULL,
    hashed INTEGER NOT NULL,
    departed INTEGER NOT NULL,
    PRIMARY KEY (id)
)""",
    """INSERT INTO image_counts (id, present, hashed, departed) VALUES (
    0,
    (SELECT count(*) FROM images WHERE state = 'present'),
    (SELECT count(*) FROM images WHERE state = 'present' AND phash IS NOT NULL),
    0
)""",
    f"""CREATE TRIGGER image_counts_inserted AFTER INSERT ON images
BEGIN
    UPDATE image_counts SET present = present + (NEW.state = 'present'), hashed = hashed + {_HASHED_NEW}
        WHERE id = 0;
END""",
    f"""CREATE TRIGGER image_counts_updated AFTER UPDATE OF state, phash ON images
BEGIN
    UPDATE image_counts SET
        present = present + (NEW.state = 'present') - (OLD.state = 'present'),
        hashed = hashed + {_HASHED_NEW} - {_HASHED_OLD},
        departed = departed + ({_HASHED_OLD} AND NOT {_HASHED_NEW})
        WHERE id = 0;
END""",
    f"""CREATE TRIGGER image_counts_deleted AFTER DELETE ON images
BEGIN
    UPDATE image_counts SET
        present = present - (OLD.state = 'present'), hashed = hashed - {_HASHED_OLD}, departed = departed + {_HASHED_OLD}
        WHERE id = 0;
END""",
)


def _ddl(*statements: str) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        for sql in statements:
            conn.exec_driver_sql(sql)

    return run


def _m0005_sets_source_folder(conn: Connection) -> None:
    # Databases made between 0005's release and the freezing of 0001 (when 0001 still built its
    # tables from the then-current schema.py) got this column from 0001 already.
    if "source_folder" not in {c["name"] for c in inspect(conn).get_columns("sets")}:
        conn.exec_driver_sql("ALTER TABLE sets ADD COLUMN source_folder TEXT")


# Append only.
MIGRATIONS: list[Migration] = [
    ("0001_initial", _ddl(*_0001_INITIAL)),
    ("0002_dup_groups", _ddl(*_0002_DUP_GROUPS)),
    ("0003_observations_crops", _ddl(*_0003_OBSERVATIONS_CROPS)),
    ("0004_proposals", _ddl(*_0004_PROPOSALS)),
    ("0005_sets_source_folder", _m0005_sets_source_folder),
    ("0006_round_indexes_proposal_due", _ddl(*_0006_ROUND_INDEXES_PROPOSAL_DUE)),
    ("0007_image_counts", _ddl(*_0007_IMAGE_COUNTS)),
]
