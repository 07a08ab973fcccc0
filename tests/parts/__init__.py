"""Real external parts the tests start: PostgreSQL (``postgres``), S3 servers (``s3``: radosgw,
SeaweedFS), HAProxy (``haproxy``); the ``distribution`` registry and ``http`` client fixtures
(``registries``)."""
