"""OCI Distribution Specification conformance tests (see conftest.py for how to run them).

Where each registry-side MUST of the distribution spec is tested:

- Pull category required; claimed categories complete: the suite as a whole.
- `<name>` regex, tag regex and 128-char limit, `<tag-or-digest>` format:
  test_manifests.py::test_invalid_repository_name, ::test_longest_tag_accepted,
  ::test_invalid_tag_rejected.
- Manifest GET 200 + exact content + `Docker-Content-Digest`; HEAD 200 + digest +
  `Content-Length`; 404 when absent: test_manifests.py::test_push_and_pull_manifest,
  ::test_unknown_manifest_is_404, ::test_pull_from_nonexistent_repository_is_404.
- Blob GET 200 + digest header matching the body; HEAD; 404:
  test_blob_pull.py::test_get_blob, ::test_head_blob, ::test_unknown_blob_is_404.
- Accept a manifest whose `subject` is missing; `MANIFEST_BLOB_UNKNOWN` on rejection:
  test_manifests.py::test_manifest_with_subject, ::test_manifest_with_missing_blob,
  ::test_index_with_missing_child.
- POST 202 + Location with a UUID; PUT 201 + Location: test_blob_upload.py::
  test_post_starts_session, ::test_post_then_put.
- Single POST: Content-Length and digest must match; 201 + Location:
  test_blob_upload.py::test_single_post, ::test_single_post_mismatch.
- Chunks: inclusive range regex, first at 0, 202 + Location + Range, in order or 416, final
  chunk out of order 416, session closed only by PUT (with digest), 201 + Location, status
  GET 204 + Location + Range: test_blob_upload.py::test_chunked_upload,
  ::test_malformed_content_range, ::test_out_of_order_chunk_is_416,
  ::test_final_chunk_out_of_order_is_416, ::test_blob_absent_until_put,
  ::test_put_without_digest, ::test_upload_status.
- Mount 201 + Location: test_blob_mount.py.
- Manifest stored byte-exact; 201 + Location; digest header equals the client's digest:
  test_manifests.py::test_push_and_pull_manifest (incl. unusual-formatting),
  ::test_push_manifest_by_digest, test_sha512.py::test_manifest_pushed_by_sha512_digest.
- `OCI-Tag` for each accepted `tag` parameter: test_manifests.py::test_tag_query_parameters.
- Nonexistent repository 404: test_manifests.py::test_pull_from_nonexistent_repository_is_404,
  test_tags.py::test_tags_of_unknown_repository.
- `OCI-Subject`: test_manifests.py::test_manifest_with_subject.
- Tags list 200, JSON shape, order, `n`, `Link` rel="next", `n=0`, `last`: test_tags.py.
- Referrers 200 (never 404), 400 on a bad digest, index Content-Type, artifactType rules,
  annotations, empty list, `Link` paging, `OCI-Filters-Applied`, referrers-tag-schema
  indexes, newly pushed referrers: test_referrers.py.
- Tag delete 202 then 404; manifest delete 202, 404 for missing repository, tags gone; blob
  delete 202, 404 when absent: test_content_management.py, test_blob_pull.py::
  test_delete_blob, ::test_delete_unknown_blob_is_404.
- Error body format and codes: helpers.assert_error, used for every error response.
- `Warning` headers (299, `-`, no date, <= 4096 bytes): checked on every response by the
  client's response hook (conftest._check_warnings).

Not testable against a registry, or not applicable to ocigate: the client-side MUSTs (verify
digests, Content-Type = mediaType, POST `Content-Length: 0`, `last` must be a proper tag,
referrers fallback and referrers-tag computation, redirects and `Authorization`, warnings
handling), several filters at once (only `artifactType` exists), and the 400/405 answers of a
registry whose deletion is disabled (ocigate always allows deletion).
"""
