"""The database schema as SQLAlchemy Core metadata, portable across MySQL/MariaDB and SQLite."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

from payscore.core.drift import MAX_BINS

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; MySQL gets a BIGINT.
_BigId = BigInteger().with_variant(Integer(), "sqlite")
# Microsecond precision on MySQL (DATETIME(6)); times are stored as naive UTC.
_Time = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

scored_transactions = Table(
    "scored_transactions",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("transaction_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    Column("terminal_id", String(64), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("event_time", _Time, nullable=False),
    Column("received_at", _Time, nullable=False),
    Column("scored_at", _Time, nullable=False),
    Column("score", Double, nullable=False),
    Column("prediction", Integer, nullable=False),
    Column("status", String(10), nullable=False),
    Column("reason_codes", String(255), nullable=False, default=""),
    Column("model_version", String(64), nullable=False),
    Column("channel", String(16)),
    Column("merchant_category", String(4)),
    Column("country", String(2)),
    Column("kafka_topic", String(249)),
    Column("kafka_partition", Integer),
    Column("kafka_offset", BigInteger),
    # The stored policy version the decision was made under (NULL: settings-only policy, or
    # a row written before policy versions existed). Added to older databases by initdb.
    Column("policy_version", BigInteger),
    # The challenger's shadow verdict on the same features (NULL: no challenger was set); it
    # never decides. Added to older databases by initdb.
    Column("challenger_version", String(64)),
    Column("challenger_score", Double),
    Column("challenger_status", String(10)),
    # The decision's top reasons as one readable line (core/explain.py ``explanation_text``,
    # at most 500 characters; NULL: explanations off, a model that cannot be explained, or a
    # row written before them). Added to older databases by initdb.
    Column("explanation", String(500)),
    # The payment's amount over its card's 30-day median when decided (the feature
    # customer_amount_ratio_median_30day). Another consumer, which lacks the card's history,
    # reads it back for the terminal's features (core/histories.py ``TerminalHistory``).
    # NULL: a row written before the column or not by a consumer. Added by initdb.
    Column("amount_ratio", Double),
    Index("ix_scored_customer_time", "customer_id", "event_time"),
    Index("ix_scored_terminal_time", "terminal_id", "event_time"),
    Index("ix_scored_status_time", "status", "event_time"),
    Index("ix_scored_event_time", "event_time"),
    # Only scored_at: the implicit id suffix serves ORDER BY scored_at DESC, id DESC.
    Index("ix_scored_scored_at", "scored_at"),
    # The fraud rate joins labels to decisions: this answers "decided when?" without the row.
    Index("ix_scored_tx_scored", "transaction_id", "scored_at"),
    # Covers the dashboard's riskiest customers/terminals: only REVIEW/DECLINED rows of a range
    # are read, from the index alone. Appends stay cheap: within a status, scored_at only grows.
    Index(
        "ix_scored_status_scored",
        "status",
        "scored_at",
        "customer_id",
        "terminal_id",
        "score",
    ),
)

ROLLUP_SCORE_BINS = 20  # the dashboard's score histogram
ROLLUP_GRAINS = (60, 3600)  # seconds: one row per minute and one per hour with decisions

# Decisions counted per minute and per hour of scored_at, maintained by DecisionWriter in the
# same transaction as the decisions, so long dashboard ranges read a few hundred rows instead
# of scanning millions. Only decisions actually inserted are counted.
decision_rollup = Table(
    "decision_rollup",
    metadata,
    Column("grain", Integer, nullable=False),  # 60 or 3600 (seconds)
    Column("bucket", _Time, nullable=False),  # start of the minute/hour, naive UTC
    Column("decisions", BigInteger, nullable=False),
    Column("approved", BigInteger, nullable=False),
    Column("review", BigInteger, nullable=False),
    Column("declined", BigInteger, nullable=False),
    *(
        Column(f"score_{i:02d}", BigInteger, nullable=False) for i in range(ROLLUP_SCORE_BINS)
    ),  # decisions with min(floor(score * 20), 19) == i
    # Decisions of the bucket whose counting label (fraud_labels) says fraud, whenever the label
    # came: kept by the label writers too (store/labels.py). NULL: not counted yet, on a
    # database upgraded from before this column until `payscore initdb` has counted it.
    Column("frauds", BigInteger),
    PrimaryKeyConstraint("grain", "bucket"),
)

# Drift (store/drift.py, core/drift.py): each decided payment's model features and score
# counted into the deciding model's reference bins, per hour of scored_at, by DecisionWriter
# in the same transaction as the decisions (a redelivered batch is never counted twice).
# ``feature`` is a feature name or "score"; bin_NN as in core.drift.bin_codes (unused: 0).
feature_histograms = Table(
    "feature_histograms",
    metadata,
    Column("model_version", String(64), nullable=False),
    Column("hour", _Time, nullable=False),  # start of the hour, naive UTC
    Column("feature", String(64), nullable=False),
    *(Column(f"bin_{i:02d}", BigInteger, nullable=False, default=0) for i in range(MAX_BINS)),
    PrimaryKeyConstraint("model_version", "hour", "feature"),
)

consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("group_id", String(255), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", _Time, nullable=False),
    PrimaryKeyConstraint("group_id", "topic", "kafka_partition"),
)

# The label that counts for each payment (the rule is in store/labels.py): what features,
# the review queue and the fraud rate read. Every event behind it is kept in label_events.
fraud_labels = Table(
    "fraud_labels",
    metadata,
    Column("transaction_id", String(64), primary_key=True),
    Column("is_fraud", Boolean, nullable=False),
    Column("known_at", _Time, nullable=False),
    Column("source", String(16), nullable=False),
    Column("labelled_by", String(64)),
    Column("note", Text),
    # Whether decision_rollup.frauds counts this label (a fraud label whose decision is stored),
    # so a writer knows what to undo when the label changes. NULL: written before the column
    # existed, or by a loader around store/labels.py; `payscore initdb` sets it.
    Column("counted", Boolean),
    Index("ix_labels_known_at", "known_at"),
    Index("ix_labels_fraud", "is_fraud", "transaction_id"),  # fraud rate: fraud labels only
)

# Every label ever received or given, append-only: chargebacks from the labels topic
# (source "stream", with the message's coordinates, so a replayed message is stored once) and
# analysts' verdicts (source "analyst", labelled_by = the signed-in analyst).
label_events = Table(
    "label_events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("transaction_id", String(64), nullable=False),
    Column("is_fraud", Boolean, nullable=False),
    Column("source", String(16), nullable=False),
    Column("labelled_by", String(64)),
    Column("note", Text),
    Column("known_at", _Time, nullable=False),
    Column("recorded_at", _Time, nullable=False),  # wall clock of the write, naive UTC
    Column("kafka_topic", String(249)),
    Column("kafka_partition", Integer),
    Column("kafka_offset", BigInteger),
    Index("ix_label_events_tx", "transaction_id", "id"),
    Index("ux_label_events_source", "kafka_topic", "kafka_partition", "kafka_offset", unique=True),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("source_topic", String(249), nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("error_kind", String(32), nullable=False),
    Column("error_message", String(1024), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("created_at", _Time, nullable=False),
    Index(
        "ux_dead_letters_source", "source_topic", "source_partition", "source_offset", unique=True
    ),
    Index("ix_dead_letters_created", "created_at"),
)

duplicates = Table(
    "duplicates",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("transaction_id", String(64), nullable=False),
    Column("source_topic", String(249), nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("seen_at", _Time, nullable=False),
    Index("ux_duplicates_source", "source_topic", "source_partition", "source_offset", unique=True),
    Index("ix_duplicates_seen", "seen_at"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("trained_at", _Time, nullable=False),
    Column("activated_at", _Time, nullable=False),
    Column("metadata_json", Text, nullable=False),
    Index("ix_model_versions_activated", "activated_at"),
)

# Live rules and lists (docs/rules.md). Every change to them adds a row to policy_versions in
# the same transaction, with one policy_audit row per changed rule or list entry; a running
# consumer polls max(policy_versions.version) and reloads the policy when it grows.
policy_versions = Table(
    "policy_versions",
    metadata,
    Column("version", _BigId, primary_key=True, autoincrement=True),
    Column("created_at", _Time, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("summary", String(255), nullable=False),
)

policy_rules = Table(
    "policy_rules",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("action", String(10), nullable=False),
    Column("params_json", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("description", String(255), nullable=False, default=""),
    Column("version", BigInteger, nullable=False),  # the policy version of its last change
    Column("updated_at", _Time, nullable=False),
)

policy_lists = Table(
    "policy_lists",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("field", String(32), nullable=False),  # the payment field its values are of
    Column("created_at", _Time, nullable=False),
)

policy_list_entries = Table(
    "policy_list_entries",
    metadata,
    Column("list_name", String(64), nullable=False),
    Column("value", String(64), nullable=False),
    Column("added_at", _Time, nullable=False),
    Column("added_by", String(64), nullable=False),
    PrimaryKeyConstraint("list_name", "value"),
)

# Append-only: who changed what, when, why, and the rule or entry before and after (JSON).
policy_audit = Table(
    "policy_audit",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("version", BigInteger, nullable=False),
    Column("at", _Time, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("change", String(32), nullable=False),  # rule.add, rule.disable, list.add, ...
    Column("subject", String(130), nullable=False),  # a rule code, or list:value
    Column("reason", String(1024), nullable=False, default=""),
    Column("before_json", Text),
    Column("after_json", Text),
    Index("ix_policy_audit_subject", "subject", "id"),
    Index("ix_policy_audit_version", "version"),
)

# The model registry (store/registry.py, `payscore models ...`): every trained model with its
# periods, metrics, thresholds and features; the artifact stays a file, verified when used,
# and this row points at it. One champion at most; ``replaced`` is the champion it replaced,
# so a rollback walks back the chain.
models = Table(
    "models",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # candidate, challenger, champion, retired
    Column("artifact_path", String(1024), nullable=False),
    Column("artifact_digest", String(64), nullable=False),  # SHA-256 of the sidecar
    Column("trained_at", _Time, nullable=False),
    Column("trained_by", String(64), nullable=False),
    Column("registered_at", _Time, nullable=False),
    Column("status_at", _Time, nullable=False),  # when the status last changed
    Column("status_by", String(64), nullable=False),
    Column("replaced", String(64)),
    Column("periods_json", Text, nullable=False),
    Column("metrics_json", Text, nullable=False),
    Column("thresholds_json", Text, nullable=False),
    Column("features_json", Text, nullable=False),
    Index("ix_models_status", "status"),
)

# Feature-state snapshots (store/snapshots.py, stream/snapshots.py): a consumer's engine state
# for one set of partitions, with what it covers (offsets, scored_transactions.id, label
# cursor) in ``covers_json``; the bytes in chunks small enough for MariaDB's default packet.
feature_snapshots = Table(
    "feature_snapshots",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("group_id", String(255), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("partitions", String(2000), nullable=False),  # "0,1,2": the owned partitions
    Column("format_version", Integer, nullable=False),
    Column("created_at", _Time, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("covers_json", Text, nullable=False),
    Index("ix_feature_snapshots_key", "group_id", "topic", "id"),
)

feature_snapshot_chunks = Table(
    "feature_snapshot_chunks",
    metadata,
    Column("snapshot_id", BigInteger, nullable=False),
    Column("seq", Integer, nullable=False),
    Column(
        "data", LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"), nullable=False
    ),
    PrimaryKeyConstraint("snapshot_id", "seq"),
)

# The dashboard's riskiest customers/terminals of a long range: after the few leaders are
# found from the DECLINED rows, their REVIEW/DECLINED rows of the range are read from these
# alone (a handful of index ranges, not every flagged decision of the range).
Index(
    "ix_scored_customer_flagged",
    scored_transactions.c.customer_id,
    scored_transactions.c.status,
    scored_transactions.c.scored_at,
    scored_transactions.c.score,
)
Index(
    "ix_scored_terminal_flagged",
    scored_transactions.c.terminal_id,
    scored_transactions.c.status,
    scored_transactions.c.scored_at,
    scored_transactions.c.score,
)
