"""The ``BlobStore`` contract (``tests/unit/store/test_blob_store.py``) on the object blob store,
over radosgw and SeaweedFS (``conftest.blob_stores``)."""

from __future__ import annotations

from ..test_blob_store import (
    pytestmark,
    test_a_commit_with_a_wrong_digest_leaves_nothing_visible,
    test_a_committed_upload_is_held_and_read_by_range,
    test_a_second_holder_waits_and_sees_the_session_ended,
    test_an_upload_is_continued_by_another_instance,
    test_failed_appends_leave_the_upload_as_it_was,
    test_idle_uploads_expire,
    test_uploads_belong_to_their_repository,
    test_written_content_is_listed_and_deleted,
)

__all__ = [
    "pytestmark",
    "test_a_commit_with_a_wrong_digest_leaves_nothing_visible",
    "test_a_committed_upload_is_held_and_read_by_range",
    "test_a_second_holder_waits_and_sees_the_session_ended",
    "test_an_upload_is_continued_by_another_instance",
    "test_failed_appends_leave_the_upload_as_it_was",
    "test_idle_uploads_expire",
    "test_uploads_belong_to_their_repository",
    "test_written_content_is_listed_and_deleted",
]
