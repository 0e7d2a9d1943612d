"""On s3://, a pointer or manifest is replaced by one PutObject, which S3 makes visible whole: never a
multipart upload, nor the streamed write of storage.write_bytes."""

from __future__ import annotations

import pytest

from workers import storage
from workers.training import artifacts


@pytest.fixture
def s3_calls(s3_base, monkeypatch):
    """The names of the S3 API calls the storage root's file system makes."""
    calls = []
    fs = s3_base.fs
    call_s3 = fs._call_s3

    async def recorded(method, *args, **kwargs):
        calls.append(method if isinstance(method, str) else method.__name__)
        return await call_s3(method, *args, **kwargs)

    monkeypatch.setattr(fs, "_call_s3", recorded)
    return calls


def test_the_pointer_is_replaced_by_a_single_put(s3_base, s3_calls):
    artifacts.write_pointer(s3_base, "acme", "m-000000000001")
    s3_calls.clear()

    artifacts.write_pointer(s3_base, "acme", "m-000000000002")

    assert s3_calls == ["put_object"]
    assert artifacts.read_pointer(s3_base, "acme") == "m-000000000002"


def test_a_body_too_large_for_one_put_is_refused_before_any_upload(s3_base, s3_calls, monkeypatch):
    monkeypatch.setattr(storage, "_SINGLE_PUT_MAX", 16)
    with pytest.raises(ValueError, match="too large to replace in one put"):
        storage.replace_json(storage.pointer_path(s3_base, "acme"), {"version": "m-000000000001"})
    assert s3_calls == []
