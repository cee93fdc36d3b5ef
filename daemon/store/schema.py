"""Tables. Identity of an image is its sha256; paths are where it was last seen."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("name", String, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

images = Table(
    "images",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("path", Text, nullable=False, index=True),  # relative to root, current canonical location
    Column("original_name", Text, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("format", String(8), nullable=False),
    Column("mtime", Float, nullable=False),
    Column("phash", String(16)),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    # present | missing (not found by the last scan) | deleted (gone for good, decided)
    # | exported (left the root after its set was decided: the decision stands)
    Column("state", String(16), nullable=False, default="present"),
    Index("ix_images_state_mtime", "state", "mtime", "sha256", "phash"),  # 0006
)

image_metadata = Table(
    "image_metadata",
    metadata,
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),
    Column("prompt", Text),
    Column("negative_prompt", Text),
    Column("seed", Integer),
    Column("batch_id", Text),
    Column("model", Text),
    Column("sources", Text, nullable=False),  # JSON list of where metadata came from
    Column("raw", Text, nullable=False),  # JSON of everything parsed
)

files = Table(
    "files",
    metadata,
    Column("path", Text, primary_key=True),  # relative to root
    Column("sha256", String(64), nullable=False, index=True),
    Column("size_bytes", Integer, nullable=False),
    Column("mtime_ns", Integer, nullable=False),
    Column("seen_at", Float, nullable=False),
)

sets = Table(
    "sets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("source", String(16), nullable=False),  # folder | grouped
    Column("reason", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("folder", Text, nullable=False),  # raw/set_<id>, relative to root
    Column("status", String(16), nullable=False, default="filed", index=True),  # filing | filed | decided
    Column("source_folder", Text),  # 0005: the dropped inbox folder, so a resumed filing can tidy it
)

set_members = Table(
    "set_members",
    metadata,
    Column("set_id", String(64), ForeignKey("sets.id"), primary_key=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("near_duplicate_of", String(64)),
    Index("ix_set_members_sha", "sha256"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),  # pending|running|done|failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("sha256", "kind", "version", name="uq_job"),
    Index("ix_jobs_state", "state", "id"),
)

sidecars = Table(
    "sidecars",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("extractor", String(32), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("payload", Text, nullable=False),  # JSON
    Column("blob", LargeBinary),  # small arrays (embeddings) as raw little-endian bytes
    Column("files", Text),  # JSON list of sidecar files written, relative to root
    Column("created_at", Float, nullable=False),
    Index("ix_sidecars_created_at", "created_at"),  # 0006
)

errors = Table(
    "errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("path", Text),
    Column("sha256", String(64)),
    Column("stage", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("resolved", Boolean, nullable=False, default=False),
    Index("ix_errors_path", "path"),
)

journal = Table(
    "journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(64)),
    Column("op", String(16), nullable=False),  # move
    Column("src", Text, nullable=False),  # relative to root
    Column("dst", Text, nullable=False),
    Column("sha256", String(64)),
    Column("state", String(16), nullable=False),  # planned | done | failed | undone
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("note", Text),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("set_id", String(64), nullable=False, index=True),
    Column("winner", String(64)),
    Column("needs_crop", Boolean, nullable=False, default=False),
    Column("deleted", Text, nullable=False),  # JSON list of sha256
    Column("crop_box", Text),  # JSON {"x","y","w","h"} or null
    Column("anomaly_tags", Text, nullable=False),  # JSON
    Column("source", String(16), nullable=False),  # observed | log | batch
    Column("supersedes", Integer),
    Column("closed_reason", Text),
    Column("line", Text, nullable=False),  # the exact session.jsonl line written
    Column("logged", Boolean, nullable=False, default=False),
)

pairs = Table(
    "pairs",
    metadata,
    Column("decision_id", Integer, ForeignKey("decisions.id"), primary_key=True),
    Column("winner", String(64), primary_key=True),
    Column("loser", String(64), primary_key=True),
)

state = Table(
    "state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# 0002: near-duplicate groups (connected components of the dedup rule), recomputed as a whole.
dup_groups = Table(
    "dup_groups",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("group_id", String(64), nullable=False, index=True),  # smallest sha256 of the group
    Column("rule", Text, nullable=False),
)

# 0003: what the user did, as observed: each member's latest location, and matched crops.
observations = Table(
    "observations",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("location", String(16), nullable=False),
    Column("moved_at", Float, nullable=False),
)

crops = Table(
    "crops",
    metadata,
    Column("crop_sha256", String(64), primary_key=True),
    Column("file", Text, nullable=False),  # relative to root
    Column("source_sha256", String(64), nullable=False, index=True),
    Column("match", Text, nullable=False),  # JSON: box, quality, exact, scale, aspect_error, method
    Column("observed_at", Float, nullable=False),
)

# 0004: every proposal made (shadow ones in watch mode too), so agreement is measured against
# what was proposed before the user's decision was known.
proposals = Table(
    "proposals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("set_id", String(64), nullable=False, index=True),
    Column("ts", Float, nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # model | prior
    Column("winner", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("margin", Float, nullable=False),
    Column("uncertain", Boolean, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("body", Text, nullable=False),  # proposal.json as written
    Column("batch_id", String(64)),  # set when batch mode decided this set by itself
)

# 0006: sets whose proposal may be due: filed, a member's anomaly report or crop written, a member's
# pending job ended. Kept by triggers (daemon/store/migrations.py); daemon.rank.ranking empties it.
proposal_due = Table(
    "proposal_due",
    metadata,
    Column("set_id", String(64), primary_key=True),
)

# 0007: one row (id 0), kept by triggers on images (daemon/store/migrations.py): present images,
# present images with a pHash (what near-duplicates compare), and how many times an image left
# that state (near-duplicate groups may have to split).
image_counts = Table(
    "image_counts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("present", Integer, nullable=False),
    Column("hashed", Integer, nullable=False),
    Column("departed", Integer, nullable=False),
)
