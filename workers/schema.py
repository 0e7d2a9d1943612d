"""What the platform's data looks like: the training files' columns and the interaction types.

The demo generator writes these, training reads them and data_quality_check flags rows that
break them, so all three take them from here.
"""

from __future__ import annotations

import pyarrow as pa

INTERACTION_TYPES = ("view", "click", "purchase")
# The columns of a tenant's training files (tenants/<t>/training/interactions/*.parquet).
TRAINING_SCHEMA = pa.schema([
    ("user_id", pa.int64()),
    ("item_id", pa.int64()),
    ("interaction_type", pa.string()),
    ("weight", pa.float32()),
    ("occurred_at", pa.timestamp("us", tz="UTC")),
])
